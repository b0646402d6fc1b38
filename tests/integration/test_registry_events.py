"""Registry events against the real servers (issue 17 acceptance 3, build item 3): `production`
moved by hand in the registry (as the MLflow UI does, by someone allowed to move it) to a release
that has not passed acceptance is put back by the events receiver within one webhook delivery,
and the operator's ledger has the entry; approvals recorded in the registry by hand settle as
`flexo review`'s do and start the release deployment."""

from __future__ import annotations

import json
import time

import pytest
from servers import ok, until

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _ledger(consortium) -> list[dict]:
    return json.loads(ok(consortium.flexo("operator", "ledger", "show", "--json")))


def _reverts(consortium) -> list[dict]:
    return [e for e in _ledger(consortium) if e["event"] == "alias-revert"]


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


def test_approvals_recorded_in_the_registry_by_hand_start_the_release(consortium, world,
                                                                      deployed):
    """Two reviewers approve beta's first version in the registry itself (as the MLflow UI
    does: one tag each, under their own server identity); the receiver settles it against the
    policy, and `flexo.expert.approved` starts the release deployment on the operator's worker."""
    operator = consortium.client("operator")
    assert operator.get_model_version("flexo-expert-beta", "1").tags["approval_status"] == \
        "pending"
    first = operator.get_model_version_by_alias("flexo-release", "candidate").version
    for reviewer in ("rev-one", "rev-two"):
        consortium.client(reviewer).set_model_version_tag("flexo-expert-beta", "1",
                                                          f"approval.{reviewer}",
                                                          "2026-12-02T08:00:00Z")
    operator = consortium.client("operator")  # this process acts as the operator again
    until("beta v1 approved", lambda: operator.get_model_version(
        "flexo-expert-beta", "1").tags["approval_status"] == "approved", timeout=60)
    tags = operator.get_model_version("flexo-expert-beta", "1").tags
    assert tags["reviewed_by"] == "rev-one,rev-two"
    release = until("the release the approval started", lambda: (
        (v := operator.get_model_version_by_alias("flexo-release", "candidate").version)
        != first and v), timeout=600)
    assert "beta:1" in operator.get_model_version("flexo-release", release).tags["experts"]
    reviews = [e for e in _ledger(consortium) if e["event"] == "review"
               and e["details"].get("recorded_in") == "registry"]
    assert [(e["subject"], e["details"]["version"]) for e in reviews] == [("beta", 1)]
