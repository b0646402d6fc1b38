"""`flexo demo`, the main job, as a user runs it in a fresh FLEXO_HOME (issue 6 acceptance 1, 3)."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from components.user_data import load_directory

CONTRIBUTORS = {"code-commons": "code", "legal-aid": "legal", "med-notes": "medical"}
WITHDRAWN = "legal-aid"


def _run_demo(home: Path, *flags: str) -> tuple[str, MlflowClient]:
    """`flexo demo` as a user runs it: the console script in a fresh process and FLEXO_HOME (its
    Prefect database there too); returns what it printed, stdout and stderr together."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_HOME", "PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    proc = subprocess.run([str(Path(sys.executable).with_name("flexo")), "demo", *flags],
                          env=env | {"FLEXO_HOME": str(home), "COLUMNS": "120"},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-5000:]
    return proc.stdout, MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")


def _summary(stdout: str) -> dict[str, list[float]]:
    """domain -> [anchor, release, after withdrawal] from the demo's final table."""
    rows = {}
    for domain in ("public", "code", "legal", "medical", "literature"):
        match = re.search(rf"│ {domain}\s+│\s+([\d,.]+) │\s+([\d,.]+) │\s+([\d,.]+) │", stdout)
        assert match, (domain, stdout)
        rows[domain] = [float(g.replace(",", "")) for g in match.groups()]
    return rows


def _sentences(texts: list[str], n: int, seed: int) -> list[str]:
    """Lines of at least 40 characters that would appear verbatim in any file holding them
    (ASCII, no quotes or backslashes that JSON would escape)."""
    rng = random.Random(seed)
    lines = [s.strip() for t in rng.sample(texts, min(200, len(texts)))
             for s in re.split(r"[.\n]", t)]
    usable = [s for s in lines if len(s) >= 40 and s.isascii() and not set(s) & set("\"\\")]
    return rng.sample(usable, min(n, len(usable)))


def _assert_no_raw_text(home: Path, client: MlflowClient) -> None:
    needles = []
    for i, contributor in enumerate(CONTRIBUTORS):
        corpus = load_directory(home / "contributors" / contributor / "data")
        found = _sentences(corpus.texts(), 30, seed=i)
        assert len(found) >= 20, contributor
        needles += found
    # What MLflow holds, through its API: params, tags, metric names of every run; registry
    # versions' tags and descriptions.
    texts = []
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            texts += [*run.data.params, *run.data.params.values(), *run.data.tags,
                      *run.data.tags.values(), *run.data.metrics]
    for model in client.search_registered_models():
        for v in client.search_model_versions(f"name = '{model.name}'"):
            texts += [*v.tags, *v.tags.values(), v.description or ""]
    blob = "\n".join(texts)
    assert not [n for n in needles if n in blob]
    # Every file flexo wrote outside the contributors' own data directories: MLflow's database
    # and artifacts, modules, caches, releases (checkpoints, release.json, model cards).
    written = [p for p in home.rglob("*") if p.is_file() and "contributors" not in p.parts]
    assert any(p.name == "release.json" for p in written)
    assert any("mlartifacts" in p.parts for p in written)
    for path in written:
        data = path.read_bytes()
        leaked = [n for n in needles if n.encode() in data]
        assert not leaked, (path, leaked[:1])


@pytest.mark.slow  # ~2.5 minutes
def test_quick_demo_tells_the_whole_story_and_no_raw_text_leaves_a_contributor(tmp_path):
    home = tmp_path / "home"
    stdout, client = _run_demo(home, "--quick")
    for step in range(1, 7):
        assert f"{step}/6" in stdout
    figures = _summary(stdout)
    assert all(v > 1 for row in figures.values() for v in row)
    for command in ("mlflow ui --backend-store-uri", "prefect server start", "flexo lineage"):
        assert command in stdout

    # A quiet console: the story and its figures, not what libraries say; that is in the log.
    lines = stdout.splitlines()
    assert len(lines) <= 60, stdout
    chatter = ("warning", "Loading weights", "Finished in state", "Beginning flow run",
               "Successfully registered", "Created version", "|#", "it/s]", "\x1b[")
    assert not [line for line in lines if any(c.lower() in line.lower() for c in chatter)], stdout
    [log] = re.findall(r"full log: (\S+\.log)", stdout)
    text = Path(log).read_text()
    assert Path(log).parent == home / "logs"
    assert "Finished in state Completed()" in text and "prefect.flow_runs" in text
    assert re.search(r"components\.lm_training: anchor\[tiny\]: step \d+/\d+", text)

    # DESIGN §3 registry names, version tags and aliases.
    names = {m.name for m in client.search_registered_models()}
    assert names == {"flexo-anchor", "flexo-release",
                     *(f"flexo-expert-{c}" for c in CONTRIBUTORS)}
    for contributor in CONTRIBUTORS:
        [version] = client.search_model_versions(f"name = 'flexo-expert-{contributor}'")
        for tag in ("approval_status", "anchor_fingerprint", "weights_sha256", "data_fingerprint"):
            assert version.tags[tag], tag
        expected = "withdrawn" if contributor == WITHDRAWN else "approved"
        assert version.tags["approval_status"] == expected
        assert version.tags["reviewer_kind"] == "demo"  # declared demo reviewers, recorded so
        assert version.tags["reviewed_by"].startswith("demo-reviewer-")
    releases = client.search_model_versions("name = 'flexo-release'")
    assert sorted(int(v.version) for v in releases) == [1, 2]
    candidate = client.get_model_version_by_alias("flexo-release", "candidate")
    assert str(candidate.version) == "2" and WITHDRAWN not in candidate.tags["experts"]
    # `production` is where the story says: on v2 when its gate passed; else nowhere, since v1
    # holds the withdrawn module (a failed gate leaves v2 a candidate).
    said = dict(re.findall(r"flexo-release v(\d): experts [^;]*; (production|candidate)", stdout))
    assert set(said) == {"1", "2"}
    aliases = client.get_registered_model("flexo-release").aliases
    if said["2"] == "production":
        assert str(client.get_model_version_by_alias("flexo-release", "production").version) == "2"
    else:
        assert "production" not in aliases
    record = json.loads(((home / "releases" / "v2") / "release.json").read_text())
    assert record["excluded"] == {WITHDRAWN: "withdrawn"}

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    _assert_no_raw_text(home, client)


@pytest.mark.slow
def test_default_demo_release_beats_the_anchor_on_every_contributed_domain(tmp_path):
    stdout, client = _run_demo(tmp_path / "home")
    figures = _summary(stdout)
    for domain in CONTRIBUTORS.values():
        anchor, release, _ = figures[domain]
        assert release < anchor, (domain, figures)
    production = client.get_model_version_by_alias("flexo-release", "production")
    assert str(production.version) == "2"  # the re-release passed its gate too
    assert figures["legal"][2] > figures["legal"][1]  # legal lost its expert
