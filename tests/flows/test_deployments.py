"""prefect.yaml through Prefect's own deployment machinery, against a real Prefect server.

A `prefect server start` subprocess (its own PREFECT_HOME and SQLite database) serves the module.
`flexo deploy` registers prefect.yaml on it; the server is then read back: every deployment with
its schedule, parameters and triggers. Emitting `flexo.withdrawal.requested` must make the
server's automation create a run of `withdraw/withdraw` whose parameters come from the event
(no worker runs it: the Scheduled run is the acceptance). The session's ephemeral server (see
conftest) is left alone: PREFECT_API_URL is set only inside these tests and their subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PREFECT_FILE = REPO / "prefect.yaml"
# The demo's contributors and their built-in domains (prefect.yaml and params.yaml keep them);
# data/<id> is what the DVC `corpora` stage writes.
CONTRIBUTORS = {"code-commons": "code", "legal-aid": "legal", "med-notes": "medical"}
EMIT = """
import json, sys
from prefect.events import emit_event
for event in json.loads(sys.argv[1]):
    assert emit_event(**event) is not None, "events are off"
"""  # the worker's queue is flushed at interpreter exit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real Prefect server on a free port; its API URL. Killed (its process group) at the end."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home),
               PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home}/server.db",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false")
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 150
        while True:
            if server.poll() is not None:
                pytest.fail(f"prefect server exited {server.returncode}:\n"
                            + (home / "server.log").read_text()[-3000:])
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("prefect server did not answer /api/health within 150 s:\n"
                            + (home / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()


@contextmanager
def server_client(url: str):
    """Prefect's own client, pointed at the test server for this block only."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}), \
            get_client(sync_client=True) as client:
        yield client


@pytest.fixture(scope="module")
def deployed(prefect_server, cli):
    """`flexo deploy` (all of prefect.yaml) against the test server; click's Result."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_API_URL", prefect_server)
        return cli("deploy")


@pytest.fixture(scope="module")
def spec() -> dict[str, dict]:
    """prefect.yaml's deployments by name, anchors resolved (as Prefect reads them)."""
    return {d["name"]: d for d in yaml.safe_load(PREFECT_FILE.read_text())["deployments"]}


def server_deployment(client, name: str):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    found = client.read_deployments(
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])))
    assert len(found) == 1, f"{len(found)} deployments named {name} on the server"
    return found[0]


def event_trigger(client, deployment):
    """The one automation that runs `deployment`: (automation, its run-deployment action)."""
    automations = client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")
    assert len(automations) == 1, [a.name for a in automations]
    (action,) = automations[0].actions
    assert action.type == "run-deployment" and action.deployment_id == deployment.id
    return automations[0], action


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
                                          "data": f"data/{contributor}",
                                          "config": {"domain": CONTRIBUTORS[contributor]}}
                (schedule,) = dep.schedules
                assert schedule.active
                assert schedule.schedule.cron == wanted["schedules"][0]["cron"]
                assert schedule.schedule.timezone == "UTC"
                crons.add(schedule.schedule.cron)
                assert client.read_resource_related_automations(
                    f"prefect.deployment.{dep.id}") == []
            else:
                assert name in ("release", "withdraw")
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


def emit(url: str, *events: dict) -> None:
    """Emit events the way flexo's flows do (`prefect.events.emit_event`), from another process."""
    env = {**os.environ, "PREFECT_API_URL": url}
    done = subprocess.run([sys.executable, "-c", EMIT, json.dumps(events)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def wait_for_runs(client, deployment, timeout: float = 60.0) -> list:
    """The deployment's flow runs, once there is at least one (or [] after `timeout` s)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
    deadline = time.monotonic() + timeout
    while not (runs := client.read_flow_runs(deployment_filter=only)) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    return runs


def test_withdrawal_event_creates_withdraw_run(deployed, prefect_server):
    assert deployed.exit_code == 0, deployed.output
    with server_client(prefect_server) as client:
        withdraw = server_deployment(client, "withdraw")
        assert wait_for_runs(client, withdraw, timeout=0) == []  # nothing before the event
        automation, _ = event_trigger(client, withdraw)
        emit(prefect_server, {
            "event": "flexo.withdrawal.requested",
            "resource": {"prefect.resource.id": "flexo.contributor.legal-aid",
                         "flexo.contributor": "legal-aid"},
            "payload": {"actor": "dpo@legal-aid", "reason": "consent withdrawn"}})
        runs = wait_for_runs(client, withdraw)
        assert len(runs) == 1, "no withdraw run within 60 s of the event"
        (run,) = runs
        assert run.parameters == {"contributor": "legal-aid", "actor": "dpo@legal-aid",
                                  "reason": "consent withdrawn"}
        assert run.state.type.value == "SCHEDULED"  # waits for a worker; none runs here
        assert run.created_by.type == "AUTOMATION" and run.created_by.id == automation.id


def test_approval_event_creates_release_run(deployed, prefect_server):
    assert deployed.exit_code == 0, deployed.output
    with server_client(prefect_server) as client:
        release = server_deployment(client, "release")
        assert wait_for_runs(client, release, timeout=0) == []
        emit(prefect_server, {
            "event": "flexo.expert.approved",
            "resource": {"prefect.resource.id": "flexo.expert.med-notes",
                         "flexo.contributor": "med-notes"},
            "payload": {"version": 3}})
        (run,) = wait_for_runs(client, release)
        assert run.parameters == {}
        assert run.created_by.type == "AUTOMATION"
