"""Model servers for tests, each a real process on a free loopback port: `flexo serve` and
`mlflow models serve`. Started, waited for (their health endpoint), stopped (SIGTERM, then
SIGKILL) at the end; a server that dies while starting fails the test with its last output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from prefect_server import free_port

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (a graceful shutdown), then SIGKILL after `timeout`; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


@contextmanager
def running(command: list[str], health: str, log: Path, env: dict[str, str] | None = None,
            timeout: float = 180) -> Iterator[Server]:
    port = free_port()
    command = [c.replace("{port}", str(port)) for c in command]
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **(env or {})},
                                   stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{command[:4]} exited {process.returncode} while starting:"
                                     f"\n{log.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(server.url + health, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{command[:4]} did not answer {health} in {timeout:.0f} s:"
                                     f"\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield server
    finally:
        server.stop()


def flexo_serve(*args: str, log: Path, env: dict[str, str] | None = None):
    """`flexo serve ARGS --port <free>` (the console script's module, this interpreter)."""
    return running([sys.executable, "-m", "flows", "serve", *map(str, args), "--port", "{port}"],
                   "/healthz", log, env)


def mlflow_serve(model_uri: str, log: Path, env: dict[str, str] | None = None,
                 scripts: Path | None = None):
    """`mlflow models serve -m MODEL_URI --env-manager local` on a free port, from the virtual
    environment whose `bin` is `scripts` (default: this interpreter's), its scripts first on
    PATH (MLflow starts `uvicorn` by name), as an activated environment has them."""
    scripts = scripts or Path(sys.executable).parent
    path = os.pathsep.join([str(scripts), os.environ.get("PATH", "")])
    return running([str(scripts / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager",
                    "local", "--host", "127.0.0.1", "--port", "{port}"], "/ping", log,
                   {"PATH": path, **(env or {})})


LOAD = """
import json, pathlib, sys, time
import httpx
url, body, stop, out = sys.argv[1], json.loads(sys.argv[2]), *map(pathlib.Path, sys.argv[3:5])
with httpx.Client(timeout=120) as client, out.open("a") as answers:
    while not stop.exists():
        try:
            code = client.post(url, json=body).status_code
        except httpx.HTTPError as e:
            code = type(e).__name__
        answers.write(f"{code}\\n")
        answers.flush()
        time.sleep(0.1)
"""


@contextmanager
def load(url: str, body: dict, folder: Path) -> Iterator[Callable[[], list[str]]]:
    """Requests of `body` sent one after another from another process until the end; yields
    a function that returns every answer's status code so far (or the error's name)."""
    import json

    stop, out = folder / "load.stop", folder / "load.codes"
    process = subprocess.Popen([sys.executable, "-c", LOAD, url, json.dumps(body), str(stop),
                                str(out)], start_new_session=True)
    try:
        yield lambda: out.read_text().split() if out.exists() else []
    finally:
        stop.touch()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
