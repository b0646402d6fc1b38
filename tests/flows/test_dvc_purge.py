"""A withdrawn contributor out of a DVC project with flexo's layout (issue 15, withdrawal 2c): its
stages, what was built from them, their outputs and their cache objects; the rest rebuilds."""

from __future__ import annotations

import pytest
from dvc_project import cache_texts, dvc_project

from components.errors import ConfigError
from flows.dvc_purge import purge_contributor


def test_a_withdrawn_contributor_leaves_a_dvc_project_and_its_cache(tmp_path, monkeypatch):
    from dvc.repo import Repo

    root = dvc_project(tmp_path / "project", ["alpha", "beta"])
    assert "beta-closed-weights-b" in (root / "models/release/weights.txt").read_text()
    assert "beta-closed-text-b" in cache_texts(root)  # the check below can fail

    purged = purge_contributor(root, "beta")  # from another working directory
    assert purged.stages == ["corpora@beta", "experts@beta", "merge"]
    assert purged.outputs == ["data/beta", "models/experts/beta", "models/release"]
    assert purged.cache_objects_removed >= 3
    for gone in ("data/beta", "models/experts/beta", "models/release"):
        assert not (root / gone).exists()
    cached = cache_texts(root)
    assert "beta-closed" not in cached and "alpha-closed-text-a" in cached
    assert "beta" not in (root / "params.yaml").read_text()
    assert "must survive the edit" in (root / "params.yaml").read_text()
    pipeline = (root / "dvc.yaml").read_text()
    assert "beta" not in pipeline and "must survive)" in pipeline
    assert "beta" not in (root / "dvc.lock").read_text()

    monkeypatch.chdir(root)
    with Repo(str(root)) as repo:  # the rest rebuilds without it, and the project is clean
        repo.reproduce()
        assert repo.status() == {}
    assert (root / "models/release/weights.txt").read_text() == "alpha-closed-weights-a\n"


def test_a_directory_that_is_not_a_flexo_dvc_project_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a flexo DVC project"):
        purge_contributor(tmp_path, "beta")
