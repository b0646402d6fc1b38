"""Governance records: no torch anywhere near them."""

import sys

import pytest
from pydantic import ValidationError

from governance.contributors import InvalidContributorId, validate_contributor_id
from governance.manifest import ExpertManifest


@pytest.mark.parametrize("good", ["ab", "hospital-7", "a" * 40, "0-0"])
def test_valid_ids(good):
    assert validate_contributor_id(good) == good


@pytest.mark.parametrize("bad", ["a", "a" * 41, "Acme", "acme_corp", "acme corp", "", "public",
                                 "ümlaut"])
def test_invalid_ids(bad):
    with pytest.raises(InvalidContributorId):
        validate_contributor_id(bad)


def test_manifest_validates_ids_and_hashes():
    fields = {"contributor": "acme", "anchor_fingerprint": "a" * 64, "weights_sha256": "b" * 64,
              "data_fingerprint": {"digest": "c" * 64, "documents": 3, "characters": 10,
                                   "bytes": 10},
              "training": {}, "code_version": "0.1.0", "created_at": "2026-11-29T12:00:00+00:00"}
    assert ExpertManifest(**fields).contributor == "acme"
    with pytest.raises(ValidationError):
        ExpertManifest(**{**fields, "contributor": "ACME"})
    with pytest.raises(ValidationError):
        ExpertManifest(**{**fields, "weights_sha256": "xyz"})


def test_governance_does_not_import_torch():
    import subprocess

    code = ("import governance.manifest, governance.contributors, governance.reviews, "
            "governance.release, governance.tags, governance.selection, governance.markdown, sys; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
