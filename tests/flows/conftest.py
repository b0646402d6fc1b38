"""Fixtures of the flow tests: one real Prefect server for the session, and prefect.yaml deployed
on it once (tests/flows/test_deployments.py reads it back; the pipeline test runs an automation
on it)."""

from __future__ import annotations

import pytest
from prefect_server import serve


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real Prefect server on a free port (its own PREFECT_HOME and database); its API URL.
    The session's ephemeral server (see tests/conftest.py) is left alone."""
    yield from serve(tmp_path_factory.mktemp("prefect-server"))


@pytest.fixture(scope="session")
def deployed(prefect_server, cli):
    """`flexo deploy` (all of prefect.yaml) against the test server; click's Result."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_API_URL", prefect_server)
        return cli("deploy")
