"""The consortium's real servers for the integration tests (issue 17): PostgreSQL, MLflow with
flexo's auth app, Prefect server and worker, started by `flexo infra up` in a fresh directory on
free ports, the policy's users synced, and stopped at the end of the session.

Each identity acts from its own FLEXO_HOME (its own machine) with only the URIs and its own
MLflow credentials, through the `flexo` console script, as a participant would."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from flows.settings import read_env_file

FLEXO = str(Path(sys.executable).with_name("flexo"))
CONTRIBUTORS = ("alpha", "beta")
REVIEWERS = ("rev-one", "rev-two")
POLICY = {"approvals_required": 2,
          "roles": {"operators": ["operator"], "reviewers": list(REVIEWERS),
                    "contributors": list(CONTRIBUTORS), "consumers": {"app": ["*"]}},
          # a tiny anchor's module barely moves perplexity: the gates are not what is tested
          "module_gates": {"max_public_change": 10.0, "max_extraction_rate": None}}


# As tests/flows/test_pipeline.py's world: small modules with a small proxy each, which the
# release's router tuning reads (an untuned merge of a tiny anchor's experts helps no one).
CONTRIBUTE = ("--steps", 20, "--router-docs", 50, "--audit-documents", 0,
              "--proxy-tokens", 20_000, "--licence", "apache-2.0")
DOMAINS = {"alpha": "code", "beta": "legal"}


def ok(result) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def until(what: str, check, timeout: float = 600):
    """`check()`'s first truthy value, polled every 2 s; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(2)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_installed() -> bool:
    return bool(shutil.which("pg_ctl") or list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")))


@dataclass
class Consortium:
    directory: Path
    policy: Path
    ports: dict[str, str]

    def env(self, user: str | None) -> dict[str, str]:
        """The environment of `user`'s machine: its own home, the servers' URIs, its own
        credentials (none for `None`: an anonymous caller)."""
        home = self.directory.parent / "homes" / (user or "anonymous")
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
        env |= self.ports | {"FLEXO_HOME": str(home), "FLEXO_POLICY": str(self.policy),
                             "PREFECT_HOME": str(home / "prefect"),
                             "FLEXO_INFRA_DIR": str(self.directory),
                             "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        for name in ["client.env"] + ([f"credentials/{user}.env"] if user else []):
            env |= read_env_file(self.directory / name)
        return env

    def flexo(self, user: str | None, *args: object, extra: dict[str, str] | None = None,
              timeout: float = 900):
        """`flexo ARGS` run as `user` (`extra`: variables changed); the CompletedProcess."""
        return subprocess.run([FLEXO, *map(str, args)], env=self.env(user) | (extra or {}),
                              text=True,
                              capture_output=True, timeout=timeout, check=False)

    def start(self, user: str | None, *args: object) -> subprocess.Popen:
        """`flexo ARGS` as `user`, in the background (text pipes)."""
        return subprocess.Popen([FLEXO, *map(str, args)], env=self.env(user), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def worker(self, user: str, pool: str, **extra: str) -> subprocess.Popen:
        """A Prefect worker of `pool` on `user`'s machine (its env, its credentials)."""
        log = (self.directory.parent / f"worker-{user}-{pool}.log").open("a")
        # its runs beat every 30 s (Prefect's least): `deployed` counts 90 s of silence a crash
        beat = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
        return subprocess.Popen([PREFECT, "worker", "start", "--pool", pool],
                                env=self.env(user) | beat | extra, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    @staticmethod
    def stop(process: subprocess.Popen, kill: bool = False) -> None:
        """Stop a background process and its children (SIGKILL: as a machine would die)."""
        import signal

        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        process.wait(timeout=60)

    def run_deployment(self, user: str, name: str) -> None:
        started = subprocess.run([PREFECT, "deployment", "run", name], env=self.env(user),
                                 text=True, capture_output=True, timeout=120, check=False)
        assert started.returncode == 0, started.stdout + started.stderr

    def client(self, user: str):
        """An MlflowClient with `user`'s credentials. MLflow reads them from the environment
        on each request, so they are this process's: the last `client()` call decides who every
        client is (call it again to switch back)."""
        from mlflow import MlflowClient

        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ[key] = self.env(user)[key]
        return MlflowClient(self.env(user)["MLFLOW_TRACKING_URI"])


REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
# As tests/flows/test_pipeline.py's world: a little router tuning, a short evaluation, a lax
# public gate (a tiny anchor's experts barely move it: not what is tested here).
RELEASE = {"router_tuning_steps": 5, "eval_max_tokens": 2048, "max_public_increase": 10.0}


def story_file(tmp: Path, data: Path) -> Path:
    """prefect.yaml's operator deployments with the test's release settings, and beta's own
    contribute deployments on beta's own work pool (its worker holds beta's credentials):
    `contribute-beta` (the story's), `contribute-beta-long` (long enough to kill its worker
    mid-training, checkpointed every 20 steps)."""
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    chosen = {d["name"]: d for d in spec["deployments"]}
    contribute = chosen["contribute-code-commons"] | {
        "name": "contribute-beta", "schedules": [],
        "work_pool": {"name": "beta-pool", "work_queue_name": "default", "job_variables": {}},
        "parameters": {"contributor": "beta", "data": str(data), "anchor": None, "config": {
            "expert": {"steps": 20, "router_documents": 50, "checkpoint_every": 0, "seed": 3},
            "audit": None, "proxies": {"min_tokens": 20_000, "max_documents": 200},
            "eval_max_tokens": 4096, "licence": "apache-2.0"}}}
    long = contribute | {"name": "contribute-beta-long", "parameters": contribute["parameters"] | {
        "config": contribute["parameters"]["config"] | {"expert": {
            "steps": 400, "router_documents": 50, "checkpoint_every": 20, "seed": 4}}}}
    release = chosen["release"] | {"parameters": {"config": RELEASE}}
    withdraw = chosen["withdraw"] | {"parameters": {"release": RELEASE}}
    story = {k: spec[k] for k in ("name", "prefect-version", "pull")}
    # `flexo deploy` runs `prefect deploy` beside the file (here: a temporary directory), so the
    # entrypoints name the checkout's files and the build step records the checkout, as
    # prefect.yaml's own `pwd` does when it lies in the checkout.
    story["build"] = [{"prefect.deployments.steps.run_shell_script": {
        "id": "checkout", "script": f"echo {REPO}"}}]
    story["deployments"] = [d | {"entrypoint": str(REPO / d["entrypoint"])} for d in
                            (contribute, long, release, withdraw, chosen["promote"])]
    path = tmp / "story.yaml"
    path.write_text(yaml.safe_dump(story, sort_keys=False))
    return path
