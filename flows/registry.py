"""Reading the MLflow model registry (DESIGN §3): the anchor, each contributor's versions and
their review state, releases and their aliases. Writing a new version is `tracking.register_version`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from components.errors import CheckpointError
from flows.settings import flexo_home

ANCHOR_MODEL = "flexo-anchor"
EXPERT_PREFIX = "flexo-expert-"
RELEASE_MODEL = "flexo-release"


def expert_model(contributor: str) -> str:
    return f"{EXPERT_PREFIX}{contributor}"


def versions(name: str) -> list[ModelVersion]:
    """Every version of `name`, newest first; [] when the model was never registered."""
    found = MlflowClient().search_model_versions(f"name = '{name}'")
    return sorted(found, key=lambda v: int(v.version), reverse=True)


def version(name: str, number: int | str) -> ModelVersion:
    try:
        return MlflowClient().get_model_version(name, str(number))
    except MlflowException:
        raise CheckpointError(f"{name} has no version {number}; check the number (the MLflow UI "
                              f"lists {name}'s versions)") from None


def contributors() -> list[str]:
    """Contributors with at least one registered module, sorted."""
    models = MlflowClient().search_registered_models(f"name LIKE '{EXPERT_PREFIX}%'")
    return sorted(m.name.removeprefix(EXPERT_PREFIX) for m in models)


def alias_version(name: str, alias: str) -> ModelVersion | None:
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def anchor_version(fingerprint: str | None = None) -> ModelVersion:
    """The newest registered anchor, or the one with this fingerprint."""
    for v in versions(ANCHOR_MODEL):
        if fingerprint is None or v.tags.get("anchor_fingerprint") == fingerprint:
            return v
    wanted = f" with fingerprint {fingerprint[:12]}" if fingerprint else ""
    raise CheckpointError(f"no {ANCHOR_MODEL} version{wanted} is registered; run the anchor flow "
                          f"first (`flexo demo` does)")


def download(v: ModelVersion, artifact_path: str, kind: str) -> Path:
    """The version's files in a local cache under FLEXO_HOME (downloaded once per version)."""
    import mlflow

    target = flexo_home() / "cache" / kind / f"{v.name}-v{v.version}"
    if not target.exists():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        mlflow.artifacts.download_artifacts(f"runs:/{v.run_id}/{artifact_path}",
                                            dst_path=str(partial))
        (partial / artifact_path).rename(target)
        shutil.rmtree(partial)
    return target
