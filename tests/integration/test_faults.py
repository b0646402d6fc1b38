"""Faults the consortium's servers survive with nothing lost (issue 17 acceptance 5): a
contributor's worker killed mid-training (its run is marked crashed and run again, resuming from
the last checkpoint), the MLflow server or PostgreSQL down while a contributor's flow runs
(MLflow's client retries, the flow completes, its version is registered once), and the events
receiver down while `production` is moved by hand (the check it runs on start puts it back,
once)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from prefect_server import server_client
from servers import CONTRIBUTE, ok, until

pytestmark = [pytest.mark.slow, pytest.mark.integration]
OUTAGE_S = 15


def _ledger(consortium, user: str) -> list[dict]:
    return json.loads(ok(consortium.flexo(user, "ledger", "show", "--json")))


def _versions(consortium, contributor: str) -> list[int]:
    found = consortium.client("operator").search_model_versions(
        f"name = 'flexo-expert-{contributor}'")
    return sorted(int(v.version) for v in found)


def _deployment_runs(consortium, deployment: str) -> list:
    with server_client(consortium.env("operator")["PREFECT_API_URL"]) as client:
        (found,) = [d for d in client.read_deployments() if d.name == deployment]
        return [r for r in client.read_flow_runs() if r.deployment_id == found.id]


def _finished(runs: list) -> list | None:
    """`runs` once every one of them is in a final state, else None."""
    return runs if runs and all(r.state.is_final() for r in runs) else None


def _contribute_through_an_outage(consortium, world, server: str, seed: int) -> None:
    """beta publishes a module (a new seed: the same module again is not published twice)
    while `server` is down for the first OUTAGE_S seconds of its flow: the flow completes, one
    new version with complete tags, one publish entry."""
    versions = _versions(consortium, "beta")
    published = [e for e in _ledger(consortium, "beta") if e["event"] == "publish"]
    ok(consortium.flexo("operator", "infra", "stop", server))
    flow = consortium.start("beta", "contribute", "--contributor", "beta",
                            "--data", world["data"]["beta"], *CONTRIBUTE, "--seed", seed)
    try:
        time.sleep(OUTAGE_S)
        assert flow.poll() is None, flow.communicate()  # still retrying, not failed
    finally:
        ok(consortium.flexo("operator", "infra", "up"))
    stdout, stderr = flow.communicate(timeout=900)
    assert flow.returncode == 0, stdout + stderr
    after = _versions(consortium, "beta")
    assert after == versions + [versions[-1] + 1]  # exactly one more, none twice
    tags = consortium.client("operator").get_model_version("flexo-expert-beta",
                                                           str(after[-1])).tags
    assert tags["approval_status"] == "pending" and len(tags["weights_sha256"]) == 64
    now = [e for e in _ledger(consortium, "beta") if e["event"] == "publish"]
    assert len(now) == len(published) + 1


def test_a_contribution_survives_the_mlflow_server_down(consortium, world):
    _contribute_through_an_outage(consortium, world, "mlflow", seed=1)


def test_a_contribution_survives_postgresql_down(consortium, world):
    _contribute_through_an_outage(consortium, world, "postgres", seed=2)


def test_a_hand_moved_alias_is_caught_when_the_receiver_comes_back(consortium, world):
    operator = consortium.client("operator")
    candidate = operator.get_model_version_by_alias("flexo-release", "candidate")
    reverts = [e for e in _ledger(consortium, "operator") if e["event"] == "alias-revert"]
    ok(consortium.flexo("operator", "infra", "stop", "events"))
    operator.set_registered_model_alias("flexo-release", "production", candidate.version)
    time.sleep(3)  # MLflow's delivery fails and is retried meanwhile
    assert "production" in operator.get_model_version("flexo-release", candidate.version).aliases
    ok(consortium.flexo("operator", "infra", "up"))  # the receiver checks on start
    assert "production" not in operator.get_model_version("flexo-release",
                                                          candidate.version).aliases
    time.sleep(10)  # MLflow's retried delivery arrives: checked again, nothing to put back
    now = [e for e in _ledger(consortium, "operator") if e["event"] == "alias-revert"]
    assert len(now) == len(reverts) + 1
    assert now[-1]["subject"] == f"flexo-release v{candidate.version}"


def test_a_contribution_whose_worker_dies_is_run_again_and_resumes(consortium, world, deployed):
    home = Path(consortium.env("beta")["FLEXO_HOME"])
    versions = _versions(consortium, "beta")
    worker = consortium.worker("beta", "beta-pool")
    try:
        consortium.run_deployment("beta", "contribute/contribute-beta-long")
        until("a training checkpoint", lambda: list(
            (home / "modules" / "beta").glob(".*.resume/state.json")), timeout=600)
    finally:
        consortium.stop(worker, kill=True)  # the machine dies: worker and run, mid-training
    worker = consortium.worker("beta", "beta-pool")  # and comes back
    try:
        new = until("the contribution run again and registered", lambda: sorted(
            set(_versions(consortium, "beta")) - set(versions)), timeout=900)
        # The version is registered before the flow's last steps: wait for the rerun to end.
        runs = until("the rerun finished", lambda: _finished(
            _deployment_runs(consortium, "contribute-beta-long")), timeout=300)
    finally:
        consortium.stop(worker)
    assert len(new) == 1  # registered once
    states = sorted(r.state.type.value for r in runs)
    assert states == ["COMPLETED", "CRASHED"], states
    rerun = next(r for r in runs if r.state.type.value == "COMPLETED")
    assert rerun.created_by.type == "AUTOMATION"
    trained = consortium.client("operator").search_runs(
        [consortium.client("operator").get_experiment_by_name("flexo-contribute").experiment_id],
        "tags.mlflow.runName = 'train'", order_by=["attributes.start_time DESC"], max_results=1)
    assert trained[0].data.metrics["resumed_from_step"] >= 20  # from the checkpoint, not 0
