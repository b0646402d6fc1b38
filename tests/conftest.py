"""Session fixtures: one tiny anchor trained through the CLI, built-in corpora loaded once."""

from __future__ import annotations

import os
import tempfile

# No hub is reachable: fail fast instead of waiting on the network for a hub id.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# One ephemeral Prefect server for the session, its database in a fresh directory the tests scan.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="flexo-test-prefect-"))
# Commands log under FLEXO_HOME/logs: by default a fresh directory, never the checkout's .flexo.
os.environ.setdefault("FLEXO_HOME", tempfile.mkdtemp(prefix="flexo-test-home-"))
# Embeddings of public text, shared by every home of the session (computed once, ~80 s).
os.environ.setdefault("FLEXO_CACHE", tempfile.mkdtemp(prefix="flexo-test-cache-"))

from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.fixture(scope="session")
def cli():
    """Invoke `flexo ...` in-process; returns click's Result (exit_code, stdout, stderr)."""
    from flows.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture(scope="session")
def tiny_anchor(tmp_path_factory, cli) -> Path:
    """A tiny anchor trained from scratch on the public mix through `flexo anchor train`."""
    out = tmp_path_factory.mktemp("anchor") / "tiny"
    result = cli("anchor", "train", "--preset", "tiny", "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def builtin():
    """Every built-in corpus, loaded once: {"public": Corpus, "code": Corpus, ...}."""
    from components.builtin_corpora import PRIVATE_DOMAINS, PUBLIC, load_domain

    return {name: load_domain(name) for name in (PUBLIC, *PRIVATE_DOMAINS)}


EXPERT_DOMAINS = ("code", "legal", "literature")


@pytest.fixture(scope="session")
def modules(tmp_path_factory, cli, tiny_anchor) -> dict[str, Path]:
    """One expert module per domain, trained through `flexo expert train` with default settings
    (but a 200-document router init to save time)."""
    root = tmp_path_factory.mktemp("modules")
    found = {}
    for domain in EXPERT_DOMAINS:
        out = root / domain
        result = cli("expert", "train", "--contributor", domain, "--domain", domain,
                     "--anchor", tiny_anchor, "--out", out, "--router-docs", 200)
        assert result.exit_code == 0, result.output
        found[domain] = out
    return found


@pytest.fixture(scope="session")
def merged(tmp_path_factory, cli, tiny_anchor, modules) -> Path:
    """The three modules merged onto the tiny anchor through `flexo merge` (top-2)."""
    out = tmp_path_factory.mktemp("merged") / "release"
    args = [a for d in EXPERT_DOMAINS for a in ("--expert", modules[d])]
    result = cli("merge", "--anchor", tiny_anchor, *args, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def stored_events():
    """`stored_events(event, resource_id)`: payloads of the Prefect events the session's server
    stored (it writes in batches, so this polls for up to a minute)."""
    import json
    import sqlite3
    import time

    def find(event: str, resource_id: str, timeout: float = 60) -> list[dict]:
        db = Path(os.environ["PREFECT_HOME"]) / "prefect.db"
        deadline = time.monotonic() + timeout
        while True:
            with sqlite3.connect(db) as conn:
                rows = conn.execute("SELECT payload FROM events WHERE event = ? AND resource_id = ?",
                                    (event, resource_id))
                found = [json.loads(r[0]) for r in rows]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(1)

    return find


def pytest_sessionfinish(session, exitstatus):
    # Prefect's ephemeral server logs "Stopping temporary server" at interpreter exit, into the
    # stream pytest captured and has closed by then: nothing to report, so drop logging's
    # "--- Logging error ---" dump.
    import logging

    logging.raiseExceptions = False
