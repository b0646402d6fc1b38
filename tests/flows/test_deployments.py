"""prefect.yaml through Prefect's own deployment machinery, against a real Prefect server.

A `prefect server start` subprocess (its own PREFECT_HOME and SQLite database) serves the session.
`flexo deploy` registers prefect.yaml on it; the server is then read back: every deployment with
its schedule, parameters and triggers. Emitting `flexo.withdrawal.requested` must make the
server's automation create a run of `withdraw/withdraw` whose parameters come from the event
(no worker runs it: the Scheduled run is the acceptance). The session's ephemeral server (see
conftest) is left alone: PREFECT_API_URL is set only inside these tests and their subprocesses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect_server import emit, event_trigger, server_client, server_deployment, wait_for_runs

REPO = Path(__file__).resolve().parents[2]
PREFECT_FILE = REPO / "prefect.yaml"
# The demo's contributors and their built-in domains (prefect.yaml and params.yaml keep them);
# data/<id> is what the DVC `corpora` stage writes.
CONTRIBUTORS = {"code-commons": "code", "legal-aid": "legal", "med-notes": "medical"}


@pytest.fixture(scope="module")
def spec() -> dict[str, dict]:
    """prefect.yaml's deployments by name, anchors resolved (as Prefect reads them)."""
    return {d["name"]: d for d in yaml.safe_load(PREFECT_FILE.read_text())["deployments"]}


def test_deploy_without_server_is_one_line(cli, monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # nor from a Prefect profile
        result = cli("deploy")
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "PREFECT_API_URL" in lines[0] and "prefect server start" in lines[0]
    assert "Traceback" not in result.output


def test_deploy_registers_every_deployment(deployed, prefect_server, spec):
    assert deployed.exit_code == 0, deployed.output
    assert "created work pool flexo-local" in deployed.stdout  # the fresh server had none
    assert {n for n in spec if n.startswith("contribute-")} == {f"contribute-{c}"
                                                                 for c in CONTRIBUTORS}
    with server_client(prefect_server) as client:
        pool = client.read_work_pool("flexo-local")
        assert pool.type == "process"
        crons = set()
        for name, wanted in spec.items():
            dep = server_deployment(client, name)
            assert dep.entrypoint == wanted["entrypoint"]
            assert dep.work_pool_name == "flexo-local"
            # Runs start in this checkout: entrypoints and data directories are relative to it.
            assert dep.pull_steps == [{"prefect.deployments.steps.set_working_directory":
                                       {"directory": str(REPO)}}]
            if name.startswith("contribute-"):
                contributor = name.removeprefix("contribute-")
                assert dep.parameters == {"contributor": contributor, "anchor": None,
                                          "data": f"data/{contributor}"}  # no declared domain
                (schedule,) = dep.schedules
                assert schedule.active
                assert schedule.schedule.cron == wanted["schedules"][0]["cron"]
                assert schedule.schedule.timezone == "UTC"
                crons.add(schedule.schedule.cron)
                assert client.read_resource_related_automations(
                    f"prefect.deployment.{dep.id}") == []
            else:
                assert name in ("release", "withdraw", "promote")
                assert dep.schedules == [] and dep.parameters == {}
                assert dep.global_concurrency_limit.limit == 1  # one release at a time
        assert len(crons) == len(CONTRIBUTORS)  # each contributor its own slot

        automation, action = event_trigger(client, server_deployment(client, "release"))
        assert automation.enabled
        assert automation.trigger.expect == {"flexo.expert.approved"}
        assert automation.trigger.match.root == {"prefect.resource.id": "flexo.expert.*"}
        assert not action.parameters  # the release reads the registry, not the event

        automation, action = event_trigger(client, server_deployment(client, "withdraw"))
        assert automation.trigger.expect == {"flexo.withdrawal.requested"}
        assert automation.trigger.match.root == {"prefect.resource.id": "flexo.contributor.*"}
        assert set(action.parameters) == {"contributor", "actor", "reason"}

        automation, action = event_trigger(client, server_deployment(client, "promote"))
        assert automation.trigger.expect == {"flexo.release.accepted"}
        assert automation.trigger.match.root == {"prefect.resource.id": "flexo.release.*"}
        assert set(action.parameters) == {"release"}


def test_withdrawal_event_creates_withdraw_run(deployed, prefect_server):
    assert deployed.exit_code == 0, deployed.output
    with server_client(prefect_server) as client:
        withdraw = server_deployment(client, "withdraw")
        before = wait_for_runs(client, withdraw, timeout=0)  # other tests' runs, if any
        automation, _ = event_trigger(client, withdraw)
        emit(prefect_server, {
            "event": "flexo.withdrawal.requested",
            "resource": {"prefect.resource.id": "flexo.contributor.legal-aid",
                         "flexo.contributor": "legal-aid"},
            "payload": {"actor": "dpo@legal-aid", "reason": "consent withdrawn"}})
        runs = wait_for_runs(client, withdraw, after=before)
        assert len(runs) == 1, "no withdraw run within 60 s of the event"
        (run,) = runs
        assert run.parameters == {"contributor": "legal-aid", "actor": "dpo@legal-aid",
                                  "reason": "consent withdrawn"}
        assert run.state.type.value == "SCHEDULED"  # waits for a worker; none runs here
        assert run.created_by.type == "AUTOMATION" and run.created_by.id == automation.id
        client.delete_flow_run(run.id)  # the session's server: no worker may run it later


@pytest.mark.parametrize(("deployment", "event", "parameters"), [
    # an approval: the release reads the registry, not the event
    ("release", {"event": "flexo.expert.approved",
                 "resource": {"prefect.resource.id": "flexo.expert.med-notes",
                              "flexo.contributor": "med-notes"},
                 "payload": {"version": 3}}, {}),
    # an acceptance: `promote` for that release (Prefect renders the template as a number)
    ("promote", {"event": "flexo.release.accepted",
                 "resource": {"prefect.resource.id": "flexo.release.7",
                              "flexo.contributor": "med-notes"},
                 "payload": {"contributor": "med-notes", "release": 7, "accepted": True}},
     {"release": 7}),
])
def test_event_creates_a_run_of_its_deployment(deployed, prefect_server, deployment, event,
                                               parameters):
    assert deployed.exit_code == 0, deployed.output
    with server_client(prefect_server) as client:
        target = server_deployment(client, deployment)
        before = wait_for_runs(client, target, timeout=0)  # other tests' runs, if any
        emit(prefect_server, event)
        (run,) = wait_for_runs(client, target, after=before)
        assert run.parameters == parameters
        assert run.created_by.type == "AUTOMATION"
        client.delete_flow_run(run.id)  # the session's server: no worker may run it later
