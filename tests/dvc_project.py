"""A small DVC project laid out as flexo's (params.yaml `contributors`, foreach `corpora` and
`experts` stages, a `merge` naming each `--expert models/experts/<id>`) with trivial commands:
what the withdrawal's DVC purge is tested on without training anything."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

MERGE = (  # concatenates each --expert directory's weights into the release
    "import pathlib, sys\n"
    "dirs = [a for i, a in enumerate(sys.argv) if i and sys.argv[i - 1] == '--expert']\n"
    "out = pathlib.Path('models/release'); out.mkdir(parents=True, exist_ok=True)\n"
    "(out / 'weights.txt').write_text(''.join(pathlib.Path(d, 'weights.txt').read_text()"
    " for d in dirs))\n")


def _pipeline(contributors: list[str]) -> str:
    experts = [f"models/experts/{c}" for c in contributors]
    expert_args = "\n      ".join(f"--expert {e}" for e in experts)
    deps = "".join(f"      - {e}\n" for e in experts)
    return f"""\
stages:
  corpora:
    foreach: ${{contributors}}
    do:
      cmd: mkdir -p data/${{key}} && echo "${{key}}-closed-text-${{item.domain}}" > data/${{key}}/t.txt
      params:
        - contributors.${{key}}
      outs:
        - data/${{key}}
  experts:
    foreach: ${{contributors}}
    do:
      cmd: mkdir -p models/experts/${{key}} && sed s/text/weights/ data/${{key}}/t.txt > models/experts/${{key}}/weights.txt
      deps:
        - data/${{key}}
      outs:
        - models/experts/${{key}}
  merge:  # the release holds every module (a comment that must survive)
    cmd: >-
      {sys.executable} merge.py
      {expert_args}
    deps:
{deps}      - merge.py
    outs:
      - models/release
"""


def dvc_project(root: Path, contributors: list[str]) -> Path:
    """The project at `root`, reproduced once (each contributor's domain: its first letter)."""
    from dvc.repo import Repo

    root.mkdir(parents=True)
    (root / "params.yaml").write_text(
        "# who contributes (a comment that must survive the edit)\ncontributors:\n" +
        "".join(f"  {c}: {{domain: {c[0]}}}\n" for c in contributors))
    (root / "dvc.yaml").write_text(_pipeline(contributors))
    (root / "merge.py").write_text(MERGE)
    Repo.init(str(root), no_scm=True).close()
    with contextlib.chdir(root), Repo(str(root)) as repo:  # DVC resolves targets from the cwd
        repo.reproduce()
    return root


def cache_texts(root: Path) -> str:
    """Everything in the project's DVC cache, as text."""
    return "".join(p.read_text(errors="replace") for p in (root / ".dvc" / "cache").rglob("*")
                   if p.is_file())
