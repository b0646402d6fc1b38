"""The whole story on the real servers, driven by events (issue 17 acceptance 1, build item 4):
a contribution runs on the contributor's own worker -> two reviewer identities approve it ->
`flexo.expert.approved` starts the `release` deployment on the operator's worker -> each
contributor accepts on its machine -> `flexo.release.accepted` starts `promote` -> `production`
-> `flexo withdraw --request-only` starts `withdraw` (revoke, purge, re-release) -> the remaining
contributor accepts the re-release -> `promote` verifies it free of the withdrawn module.

Nobody starts a release, promotion or withdrawal flow by hand: the test only acts as each party
would (deploy, run the contributor's deployment, review, accept, ask for a withdrawal) and waits
for the registry to show what the deployments did."""

from __future__ import annotations

import json

import pytest
from prefect_server import server_client
from servers import ok
from servers import until as _until

pytestmark = [pytest.mark.slow, pytest.mark.integration]

def _alias(client, alias: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias("flexo-release", alias).version)
    except Exception:  # noqa: BLE001 - no such alias yet
        return None


def test_the_whole_story_runs_on_events(consortium, world, deployed):
    operator = consortium.client("operator")
    worker = consortium.worker("beta", "beta-pool")
    try:
        # beta's contribution, on beta's worker, with beta's credentials
        before = {int(v.version) for v in operator.search_model_versions(
            "name = 'flexo-expert-beta'")}
        consortium.run_deployment("beta", "contribute/contribute-beta")
        version = _until("beta's contribution registered", lambda: {
            int(v.version) for v in operator.search_model_versions(
                "name = 'flexo-expert-beta'")} - before).pop()
        first = _alias(operator, "candidate")
        for reviewer in ("rev-one", "rev-two"):  # the second approval emits the event
            ok(consortium.flexo(reviewer, "review", "approve", "--contributor", "beta",
                                "--version", version))
        both = _until("the event-triggered release", lambda: (
            (v := _alias(operator, "candidate")) != first and v))
        experts = operator.get_model_version("flexo-release", str(both)).tags["experts"]
        assert experts == f"alpha:1,beta:{version}"
        for contributor in ("alpha", "beta"):  # each on its own machine, its own text
            ok(consortium.flexo(contributor, "accept", "--contributor", contributor,
                                "--release", both, "--data", world["data"][contributor]))
        _until("production after both acceptances", lambda: _alias(operator,
                                                                   "production") == both)

        ok(consortium.flexo("alpha", "withdraw", "--contributor", "alpha", "--request-only",
                            "--reason", "consent withdrawn"))
        rerelease = _until("the re-release without alpha", lambda: (
            (v := _alias(operator, "candidate")) not in (both, None) and v))
        assert operator.get_model_version("flexo-release",
                                          str(rerelease)).tags["experts"] == f"beta:{version}"
        assert all(v.tags["approval_status"] == "withdrawn" for v in
                   operator.search_model_versions("name = 'flexo-expert-alpha'"))
        ok(consortium.flexo("beta", "accept", "--contributor", "beta", "--release", rerelease,
                            "--data", world["data"]["beta"]))
        _until("production on the re-release", lambda: _alias(operator,
                                                               "production") == rerelease)
    finally:
        consortium.stop(worker)
    ledger = json.loads(ok(consortium.flexo("operator", "ledger", "show", "--json")))
    verified = [e for e in ledger if e["event"] == "verification"
                and e["subject"] == "alpha" and e["details"].get("release") == rerelease]
    assert verified and verified[-1]["details"]["passed"]
    with server_client(consortium.env("operator")["PREFECT_API_URL"]) as client:
        names = {d.id: d.name for d in client.read_deployments()}
        by_event = {names.get(r.deployment_id) for r in client.read_flow_runs()
                    if r.created_by and r.created_by.type == "AUTOMATION"
                    and r.state and r.state.type.value == "COMPLETED"}
    assert {"release", "promote", "withdraw"} <= by_event
