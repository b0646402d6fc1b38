"""A real Prefect server for tests, and what tests do with it: deploy prefect.yaml, emit events
the way flexo's flows do, wait for the runs the server's automations create, run them with a
worker. The fixtures using these live in tests/flows/conftest.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
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


def serve(home: Path) -> Iterator[str]:
    """A real Prefect server on a free port; its API URL. Killed (its process group) at the end."""
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
                raise RuntimeError(f"prefect server exited {server.returncode}:\n"
                            + (home / "server.log").read_text()[-3000:])
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("prefect server did not answer /api/health within 150 s:\n"
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


def emit(url: str, *events: dict) -> None:
    """Emit events the way flexo's flows do (`prefect.events.emit_event`), from another process."""
    env = {**os.environ, "PREFECT_API_URL": url}
    done = subprocess.run([sys.executable, "-c", EMIT, json.dumps(events)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def wait_for_runs(client, deployment, timeout: float = 60.0, after: list | None = None) -> list:
    """The deployment's flow runs not in `after` (runs seen earlier: the server is the session's),
    once there is at least one (or [] after `timeout` s)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
    seen = {run.id for run in after or []}
    deadline = time.monotonic() + timeout
    while True:
        runs = [r for r in client.read_flow_runs(deployment_filter=only) if r.id not in seen]
        if runs or time.monotonic() >= deadline:
            return runs
        time.sleep(0.5)


def run_worker(url: str, env: dict[str, str], timeout: float = 600) -> str:
    """`prefect worker start --pool flexo-local --run-once --limit 1` in this checkout, as an
    operator's worker would: it runs the flow runs due now and waits for them (`--limit` makes
    `--run-once` wait); returns what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "flexo-local",
         "--run-once", "--limit", "1"],
        env={**os.environ, **env, "PREFECT_API_URL": url}, cwd=REPO, capture_output=True,
        text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr
