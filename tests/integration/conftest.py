"""Session fixtures of the integration tests: the servers up (`consortium`) and a world made on
them through the CLI (`world`); helpers in servers.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from servers import (
    CONTRIBUTE,
    DOMAINS,
    FLEXO,
    POLICY,
    Consortium,
    free_port,
    ok,
    postgres_installed,
    story_file,
)


@pytest.fixture(scope="session")
def consortium():
    if not postgres_installed():
        pytest.skip("PostgreSQL is not installed (.ci/run installs the distribution's package)")
    root = Path(tempfile.mkdtemp(prefix="flexo-consortium-"))
    root.chmod(0o711)  # the postgres account (when run as root) passes through to its data
    policy = root / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    ports = {f"FLEXO_{name}_PORT": str(free_port()) for name in ("PG", "MLFLOW", "PREFECT",
                                                                  "EVENTS")}
    world = Consortium(root / "infra", policy, ports)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    base |= ports | {"FLEXO_HOME": str(root / "homes" / "operator"), "FLEXO_POLICY": str(policy)}
    up = subprocess.run([FLEXO, "infra", "up", "--dir", world.directory], env=base, text=True,
                        capture_output=True, timeout=600, check=False)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        sync = subprocess.run([FLEXO, "infra", "users", "sync", "--dir", world.directory],
                              env=base, text=True, capture_output=True, timeout=600, check=False)
        assert sync.returncode == 0, sync.stdout + sync.stderr
        status = subprocess.run([FLEXO, "infra", "status", "--dir", world.directory], env=base,
                                text=True, capture_output=True, timeout=60, check=False)
        assert status.returncode == 0 and status.stdout.count(" running") == 5, status.stdout
        yield world
    finally:
        subprocess.run([FLEXO, "infra", "down", "--dir", world.directory], env=base,
                       capture_output=True, timeout=300, check=False)
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(key, None)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def world(consortium, tiny_anchor, builtin, tmp_path_factory):
    """On the servers: the operator registers the anchor; alpha and beta each publish a module
    from their own machine; two reviewers approve alpha's; the operator releases it."""
    from components.documents import Corpus
    from components.user_data import write_directory

    root = tmp_path_factory.mktemp("consortium-data")
    ok(consortium.flexo("operator", "anchor", "register", "--from", tiny_anchor))
    data = {}
    for contributor, domain in DOMAINS.items():
        docs = builtin[domain].documents[:300]
        small = Corpus.from_texts(domain, ((d.text, d.source) for d in docs))
        data[contributor] = write_directory(small, root / contributor, domain)
        ok(consortium.flexo(contributor, "contribute", "--contributor", contributor,
                             "--data", data[contributor], *CONTRIBUTE))
    for reviewer in ("rev-one", "rev-two"):
        ok(consortium.flexo(reviewer, "review", "declare"))
        ok(consortium.flexo(reviewer, "review", "approve", "--contributor", "alpha",
                             "--version", 1))
    ok(consortium.flexo("operator", "release", "--rt-steps", 5, "--eval-tokens", 2048,
                         "--max-public-increase", 10))
    return {"data": data}


@pytest.fixture(scope="session")
def deployed(consortium, world, tmp_path_factory) -> Path:
    """The operator's deployments and beta's on the Prefect server (`flexo deploy`), contribution
    runs without a heartbeat for 90 s counted as crashed (the workers beat every 30 s)."""
    story = story_file(tmp_path_factory.mktemp("story"), world["data"]["beta"])
    ok(consortium.flexo("operator", "deploy", "--prefect-file", story, "--crash-after", 90))
    return story
