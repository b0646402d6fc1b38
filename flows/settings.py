"""Where flexo keeps its state when nothing else is configured (DESIGN §3, embedded default)."""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path


def flexo_home() -> Path:
    """`FLEXO_HOME`, default `./.flexo`; read at call time so tests and users can point it away."""
    return _absolute(os.environ.get("FLEXO_HOME", ".flexo"), os.getcwd())


@functools.lru_cache(maxsize=16)
def _absolute(path: str, cwd: str) -> Path:
    """`path` resolved once per working directory: a server asks for the home on every request,
    and resolving walks every component with a system call."""
    return (Path(cwd) / path).resolve()


def shared_cache() -> Path:
    """`FLEXO_CACHE`, default `$FLEXO_HOME/cache/shared`: content-addressed files (embeddings of
    public text, keyed by its fingerprint) that any home may share, unlike a home's registry
    downloads."""
    return Path(os.environ.get("FLEXO_CACHE") or flexo_home() / "cache" / "shared").resolve()


def prepare_prefect() -> None:
    """Defaults for Prefect, set before it is imported: with no `PREFECT_API_URL`, its ephemeral
    server keeps its database under FLEXO_HOME, waits long enough to start on a slow machine and
    sends no telemetry (no network here); with one, its client retries a 500 too."""
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_HOME", str(flexo_home() / "prefect"))
        Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # Prefect won't
    else:  # a server whose database restarts answers 500 meanwhile: retried, like a 503
        os.environ.setdefault("PREFECT_CLIENT_RETRY_EXTRA_CODES", "500")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def start_prefect_server() -> Callable[[], None]:
    """Start Prefect's temporary server (none when `PREFECT_API_URL` names one) in a thread, so
    that its ~20 s start on a fresh database overlaps the caller's imports; returns the wait for
    it, to call before the first flow. A start that failed here is tried again by Prefect."""
    if os.environ.get("PREFECT_API_URL"):
        return lambda: None
    from prefect.server.api.server import SubprocessASGIServer  # the one Prefect's client uses

    def start() -> None:
        try:
            SubprocessASGIServer().start()
        except Exception as e:  # noqa: BLE001 - Prefect's own start tries again and reports it
            logging.getLogger(__name__).info("Prefect's server did not start early: %s", e)

    thread = threading.Thread(target=start, name="prefect-server-start", daemon=True)
    thread.start()
    return thread.join


def server_identity() -> str | None:
    """Who the MLflow server knows this caller as (MLFLOW_TRACKING_USERNAME, with a tracking
    URI that names a server), or None in the embedded mode, where `--as` is trusted as given."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    return user if user and uri.startswith(("http://", "https://")) else None


def read_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines (what infra/local writes: client.env, credentials, secrets.env)."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
