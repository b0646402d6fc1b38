"""The DVC pipeline (dvc.yaml, params.yaml) and `flexo data export`, which its data stages call.

The slow test is the acceptance check: `dvc repro` on a fresh clone builds everything from nothing
(no DVC remote, no cache) and `dvc.lock` records every stage. It clones committed history only:
to check uncommitted work, commit it to a scratch repository and point FLEXO_REPO at it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = {"public", "code", "legal", "medical", "literature"}


def _expected_stages(root: Path) -> set[str]:
    """Stage names as dvc.lock spells them, `foreach` expanded (`experts@code-commons`), read
    from dvc.yaml and params.yaml without DVC."""
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text())
    params = yaml.safe_load((root / "params.yaml").read_text())
    names = set()
    for name, stage in pipeline["stages"].items():
        items = stage.get("foreach")
        if items is None:
            names.add(name)
            continue
        if isinstance(items, str):  # "${contributors}": a params.yaml key
            items = params[re.fullmatch(r"\$\{(.+)\}", items).group(1)]
        names |= {f"{name}@{key}" for key in items}
    return names


def _dvc_stages(root: Path) -> dict:
    """DVC's own reading of the pipeline: {stage name: Stage}, plus the dependency edges."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = {s.addressing: s for s in repo.index.stages}
        edges = {(a.addressing, b.addressing) for a, b in repo.index.graph.edges}
    return stages, edges


def test_pipeline_stage_graph_runs_corpora_anchor_experts_merge_evaluate():
    stages, edges = _dvc_stages(ROOT)
    contributors = list(yaml.safe_load((ROOT / "params.yaml").read_text())["contributors"])
    assert set(stages) == _expected_stages(ROOT)
    assert contributors and all(re.fullmatch(r"[a-z0-9-]{2,40}", c) for c in contributors)
    needs = {a: {b for x, b in edges if x == a} for a in stages}  # stage -> stages it reads
    for c in contributors:
        assert needs[f"experts@{c}"] == {f"corpora@{c}", "anchor"}
    assert needs["merge"] == {"anchor", *(f"experts@{c}" for c in contributors)}
    assert needs["evaluate@anchor"] == {"anchor", "heldout"}
    assert needs["evaluate@release"] == {"merge", "heldout"}
    # The hand-written lists in dvc.yaml agree with params.yaml and with each other: the merge
    # takes every contributor's expert in params order, evaluation reads every held-out export.
    merged = re.findall(r"--expert models/experts/(\S+)", stages["merge"].cmd)
    assert merged == contributors
    exported = re.findall(r"--out data/heldout/(\S+)", " ".join(stages["heldout"].cmd))
    for model in ("anchor", "release"):
        assert re.findall(r"--data data/heldout/(\S+)", stages[f"evaluate@{model}"].cmd) == exported
    assert set(exported) == DOMAINS
    for stage in stages.values():  # every stage is a flexo command with code among its deps
        assert "flexo " in " ".join(stage.cmd if isinstance(stage.cmd, list) else [stage.cmd])
        code = [d.def_path for d in stage.deps if d.def_path.endswith(".py")]
        assert code and all((ROOT / path).is_file() for path in code), stage.addressing


def test_data_export_writes_a_directory_that_reads_back_the_same(cli, builtin, tmp_path):
    from components.user_data import load_directory

    out = tmp_path / "legal-test"
    result = cli("data", "export", "--domain", "legal", "--split", "test", "--out", out)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 1 and str(out) in result.stdout
    expected = builtin["legal"].split("test")
    loaded = load_directory(out)
    assert len(loaded.documents) == len(expected.documents) > 0
    assert loaded.fingerprint().digest == expected.fingerprint().digest
    assert [p.name for p in tmp_path.iterdir()] == ["legal-test"]  # no partial directory left

    again = cli("data", "export", "--domain", "legal", "--split", "test", "--out", out)
    assert again.exit_code != 0 and "already exists" in again.stderr


def test_data_export_refuses_an_unknown_domain_in_one_line(cli, tmp_path):
    result = cli("data", "export", "--domain", "finance", "--out", tmp_path / "x")
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "finance" in lines[0]
    assert "'public', 'code', 'legal', 'medical', 'literature'" in lines[0]
    assert not (tmp_path / "x").exists()


def test_evaluate_scores_each_data_directory_and_writes_the_plots_csv(cli, tiny_anchor, tmp_path):
    """What the evaluate stages run: one domain per --data directory, a CSV for `dvc plots`."""
    heldout = tmp_path / "heldout"
    for domain in ("legal", "literature"):
        result = cli("data", "export", "--domain", domain, "--split", "test",
                     "--out", heldout / domain)
        assert result.exit_code == 0, result.output
    table = tmp_path / "plots" / "anchor.csv"
    result = cli("evaluate", "--model", tiny_anchor, "--data", heldout / "legal",
                 "--data", heldout / "literature", "--json", "--max-tokens", 2048, "--csv", table)
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert list(scores) == ["legal", "literature"]
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["domain"], r["model"]) for r in rows] == [(d, tiny_anchor.name) for d in scores]
    for row in rows:
        assert float(row["perplexity"]) == pytest.approx(scores[row["domain"]]["perplexity"])

    same = cli("evaluate", "--model", tiny_anchor, "--data", heldout / "legal",
               "--data", heldout / "legal")
    assert same.exit_code != 0 and "different names" in same.stderr
    assert len(same.stderr.strip().splitlines()) == 1


def _run(args: list[str], cwd: Path, env: dict, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.slow
def test_dvc_repro_on_a_fresh_clone_builds_and_locks_every_stage(tmp_path):
    source = os.environ.get("FLEXO_REPO", str(ROOT))
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", source, str(clone)], check=True, timeout=120)
    bin_dir = str(Path(sys.executable).parent)  # where this venv's `flexo` and `dvc` live
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=str(clone),  # the clone's code, not an editable install elsewhere
               FLEXO_HOME=str(tmp_path / "home"), DVC_NO_ANALYTICS="1")

    # shorter training and evaluation than the shipped params (the stages and their wiring are
    # under test, not the figures): params.yaml is where a user changes them too
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["experts"]["steps"], params["merge"]["rt-steps"] = 20, 10
    params["evaluate"]["max-tokens"] = 2048
    (clone / "params.yaml").write_text(yaml.safe_dump(params))
    repro = _run(["dvc", "repro"], clone, env, timeout=1500)
    assert repro.returncode == 0, (repro.stdout + repro.stderr)[-4000:]

    lock = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    assert set(lock) == _expected_stages(clone)
    assert {"corpora@med-notes", "experts@med-notes", "merge", "evaluate@release"} <= lock.keys()
    md5 = re.compile(r"[0-9a-f]{32}(\.dir)?")
    for name, entry in lock.items():
        for kind in ("deps", "outs"):
            assert entry.get(kind), (name, kind)
            assert all(md5.fullmatch(f.get("md5", "")) for f in entry[kind]), (name, kind)

    for model in ("anchor", "release"):
        metrics = json.loads((clone / "metrics" / f"{model}.json").read_text())
        assert set(metrics) == DOMAINS, model
        assert all(math.isfinite(m["perplexity"]) and m["perplexity"] > 1 for m in metrics.values())
        with open(clone / "plots" / f"{model}.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert {r["domain"] for r in rows} == DOMAINS and {r["model"] for r in rows} == {model}

    status = _run(["dvc", "status", "--json"], clone, env, timeout=300)
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout + status.stderr
    plots = _run(["dvc", "plots", "show", "--json"], clone, env, timeout=300)
    assert plots.returncode == 0, plots.stderr
    (plot,) = json.loads(plots.stdout)["data"]["perplexity"]  # dvc.yaml's top-level plot
    drawn = {(v["filename"], v["domain"]) for v in plot["content"]["data"]["values"]}
    assert drawn == {(f"{m}.csv", domain) for m in ("anchor", "release") for domain in DOMAINS}
