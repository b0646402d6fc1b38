"""A withdrawn contributor out of a DVC project laid out as flexo's (`dvc.yaml`, `params.yaml`):
its stages and every stage built from them, their outputs, and their objects in the DVC cache.

    params.yaml: its `contributors` entry -> dvc.yaml: its `--expert models/experts/<id>` and
    that dependency -> dvc.lock: the lock entries of its stages and of every stage downstream
    (the merge holds its module, the release's evaluation reads the merge) -> the workspace
    outputs of those stages, and their run-cache entries -> `dvc gc --workspace --force`: every
    cache object no remaining output uses

YAML files are edited round-trip (comments and layout kept). What stays: `git` history of
`dvc.lock` keeps the removed outputs' hashes (numbers, not data); a DVC remote keeps the objects
until `dvc gc --workspace --cloud` (an operator's decision: other clones may need them). A later
`dvc repro` rebuilds the downstream stages without the contributor.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel

from components.atomic import atomic_write
from components.errors import ConfigError


class DvcPurge(BaseModel):
    stages: list[str]  # lock entries removed
    outputs: list[str]  # workspace paths deleted
    cache_objects_removed: int


def _yaml():
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip: comments, order and block styles kept
    yaml.preserve_quotes = True
    yaml.width = 100
    return yaml


def _edit(path: Path, change) -> None:
    import io

    yaml = _yaml()
    data = yaml.load(path.read_text(encoding="utf-8"))
    change(data)
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    atomic_write(path, buffer.getvalue())


def _cache_objects(root: Path) -> int:
    cache = root / ".dvc" / "cache"
    return sum(1 for p in cache.rglob("*") if p.is_file()) if cache.is_dir() else 0


def _downstream(lock: dict, dropped: set[str]) -> set[str]:
    """`dropped` and every stage whose dependencies include an output of one of them."""
    outs = {name: {o["path"] for o in entry.get("outs", [])} for name, entry in lock.items()}
    while True:
        produced = set().union(*(outs[name] for name in dropped)) if dropped else set()
        more = {name for name, entry in lock.items() if name not in dropped and any(
            dep["path"] == out or dep["path"].startswith(f"{out}/")
            for dep in entry.get("deps", []) for out in produced)}
        if not more:
            return dropped
        dropped |= more


def _forget_runs(root: Path, outputs: set[str]) -> None:
    """Drop the run-cache entries (`.dvc/cache/runs`: each run's command, dependencies and
    output hashes, kept so a repro can restore instead of re-run) of the removed stages."""
    import yaml

    runs = root / ".dvc" / "cache" / "runs"
    for entry in (p for p in runs.rglob("*") if p.is_file()) if runs.is_dir() else ():
        record = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
        paths = {item.get("path") for key in ("outs", "deps") for item in record.get(key, [])}
        if paths & outputs:
            entry.unlink()


def purge_contributor(root: Path, contributor: str) -> DvcPurge:
    """Take `contributor` out of the DVC project at `root` and garbage-collect what it built."""
    from dvc.repo import Repo

    root = Path(root)
    params, pipeline, lock_file = root / "params.yaml", root / "dvc.yaml", root / "dvc.lock"
    if not (pipeline.is_file() and params.is_file()):
        raise ConfigError(f"{root} is not a flexo DVC project (needs dvc.yaml and params.yaml); "
                          f"pass the repository that holds them")
    expert_dir = f"models/experts/{contributor}"

    def drop_param(data) -> None:
        data["contributors"].pop(contributor, None)

    def drop_expert(data) -> None:
        for stage in data["stages"].values():
            cmd = stage.get("cmd")
            if isinstance(cmd, str) and f"--expert {expert_dir}" in cmd:
                stage["cmd"] = type(cmd)(" ".join(cmd.replace(f"--expert {expert_dir}", "")
                                                  .split()))
            deps = stage.get("deps")
            if deps is not None and expert_dir in deps:
                deps.remove(expert_dir)

    _edit(params, drop_param)
    _edit(pipeline, drop_expert)
    stages, outputs = [], []
    if lock_file.is_file():
        lock = _yaml().load(lock_file.read_text(encoding="utf-8"))["stages"]
        own = {name for name in lock if name.endswith(f"@{contributor}")}
        stages = sorted(_downstream(dict(lock), own))
        for name in stages:
            for out in lock[name].get("outs", []):
                target = root / out["path"]
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
                outputs.append(out["path"])
        _edit(lock_file, lambda data: [data["stages"].pop(name) for name in stages])
    before = _cache_objects(root)
    _forget_runs(root, set(outputs))
    with Repo(str(root)) as repo:
        repo.gc(workspace=True, force=True)
    return DvcPurge(stages=stages, outputs=sorted(outputs),
                    cache_objects_removed=before - _cache_objects(root))
