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
from dataclasses import dataclass
from pathlib import Path

FLEXO = str(Path(sys.executable).with_name("flexo"))
CONTRIBUTORS = ("alpha", "beta")
REVIEWERS = ("rev-one", "rev-two")
POLICY = {"approvals_required": 2,
          "roles": {"operators": ["operator"], "reviewers": list(REVIEWERS),
                    "contributors": list(CONTRIBUTORS), "consumers": {"app": ["*"]}},
          # a tiny anchor's module barely moves perplexity: the gates are not what is tested
          "module_gates": {"max_public_change": 10.0, "max_extraction_rate": None}}


CONTRIBUTE = ("--steps", 20, "--router-docs", 50, "--audit-documents", 0, "--proxy-tokens", 0,
              "--licence", "apache-2.0")
DOMAINS = {"alpha": "code", "beta": "legal"}


def ok(result) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


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
            for line in (self.directory / name).read_text().splitlines():
                key, _, value = line.partition("=")
                env[key] = value
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

    def client(self, user: str):
        """An MlflowClient with `user`'s credentials (set for this process: tests that use
        it run one identity at a time)."""
        from mlflow import MlflowClient

        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ[key] = self.env(user)[key]
        return MlflowClient(self.env(user)["MLFLOW_TRACKING_URI"])
