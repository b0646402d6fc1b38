"""Registry events against the real servers (issue 17 acceptance 3): `production` moved by hand in
the registry (as the MLflow UI does, by someone allowed to move it) to a release that has not
passed acceptance is put back by the events receiver within one webhook delivery, and the
operator's ledger has the entry."""

from __future__ import annotations

import json
import time

import pytest
from servers import ok

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _reverts(consortium) -> list[dict]:
    entries = json.loads(ok(consortium.flexo("operator", "ledger", "show", "--json")))
    return [e for e in entries if e["event"] == "alias-revert"]


def test_production_moved_by_hand_to_an_unaccepted_release_is_put_back(consortium, world):
    operator = consortium.client("operator")
    candidate = operator.get_model_version_by_alias("flexo-release", "candidate")
    before = len(_reverts(consortium))
    operator.set_registered_model_alias("flexo-release", "production", candidate.version)
    deadline = time.monotonic() + 60  # one delivery: MLflow posts within a second or two
    while "production" in operator.get_model_version("flexo-release", candidate.version).aliases:
        assert time.monotonic() < deadline, "production was not put back within 60 s"
        time.sleep(0.5)
    reverts = _reverts(consortium)
    assert len(reverts) == before + 1
    entry = reverts[-1]
    assert entry["subject"] == f"flexo-release v{candidate.version}"
    assert entry["actor"] == "flexo-events"
    assert "has not answered" in entry["details"]["reason"]  # the contributors' acceptance
    assert entry["details"]["restored"] == "none"  # nothing was production before
