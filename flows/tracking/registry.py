"""The MLflow model registry (DESIGN §3): the anchor, each contributor's module versions, releases
and their aliases. Every read returns `RegistryVersion`s with their tags parsed into governance's
records; every write takes such a record. No other code touches registry tags as strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from components.atomic import atomic_output_dir
from components.errors import CheckpointError
from flows.settings import flexo_home
from flows.tracking.runs import active_run_id
from governance.tags import (
    AnchorTags,
    ExpertVersionTags,
    RegistryVersion,
    ReleaseTags,
    TagRecord,
)

ANCHOR_MODEL = "flexo-anchor"
EXPERT_PREFIX = "flexo-expert-"
RELEASE_MODEL = "flexo-release"

T = TypeVar("T", bound=TagRecord)


def expert_model(contributor: str) -> str:
    return f"{EXPERT_PREFIX}{contributor}"


def _parsed(v: ModelVersion, tags: type[T]) -> RegistryVersion[T]:
    try:
        record = tags.from_tags(v.tags)
    except ValidationError as e:
        problem = e.errors()[0]
        raise CheckpointError(f"{v.name} version {v.version} does not carry flexo's tags "
                              f"({'.'.join(map(str, problem['loc']))}: {problem['msg']}); fix "
                              f"its tags in the MLflow UI or delete the version") from None
    return RegistryVersion[tags](name=v.name, version=int(v.version), run_id=v.run_id,
                                 aliases=sorted(v.aliases or []), description=v.description or "",
                                 tags=record)


def _versions(name: str) -> list[ModelVersion]:
    """Every version of `name`, newest first; [] when the model was never registered."""
    found = MlflowClient().search_model_versions(f"name = '{name}'")
    return sorted(found, key=lambda v: int(v.version), reverse=True)


def _version(name: str, number: int | str) -> ModelVersion:
    try:
        return MlflowClient().get_model_version(name, str(number))
    except MlflowException:
        raise CheckpointError(f"{name} has no version {number}; check the number (the MLflow UI "
                              f"lists {name}'s versions)") from None


# Reads

def anchor_version(fingerprint: str | None = None,
                   number: int | None = None) -> RegistryVersion[AnchorTags]:
    """The anchor version `number`, or the newest registered anchor (with this fingerprint)."""
    if number is not None:
        return _parsed(_version(ANCHOR_MODEL, number), AnchorTags)
    for v in _versions(ANCHOR_MODEL):
        if fingerprint is None or v.tags.get("anchor_fingerprint") == fingerprint:
            return _parsed(v, AnchorTags)
    wanted = f" with fingerprint {fingerprint[:12]}" if fingerprint else ""
    raise CheckpointError(f"no {ANCHOR_MODEL} version{wanted} is registered; run the anchor flow "
                          f"first (`flexo demo` does)")


def expert_versions(contributor: str) -> list[RegistryVersion[ExpertVersionTags]]:
    """The contributor's module versions, newest first."""
    return [_parsed(v, ExpertVersionTags) for v in _versions(expert_model(contributor))]


def expert_version(contributor: str, number: int) -> RegistryVersion[ExpertVersionTags]:
    return _parsed(_version(expert_model(contributor), number), ExpertVersionTags)


def model_names(prefix: str, client: MlflowClient | None = None) -> list[str]:
    """Every registered model whose name starts with `prefix`, all pages of the search."""
    client = client or MlflowClient()
    names, token = [], None
    while True:
        page = client.search_registered_models(f"name LIKE '{prefix}%'", page_token=token)
        names += [m.name for m in page]
        token = page.token
        if not token:
            return names


def contributors() -> list[str]:
    """Contributors with at least one registered module, sorted."""
    return sorted(name.removeprefix(EXPERT_PREFIX) for name in model_names(EXPERT_PREFIX))


def version_tags(name: str, number: int) -> dict[str, str]:
    """A version's tags as the registry holds them (strings): to tell who wrote a record."""
    return dict(_version(name, number).tags)


def release_version(number: int) -> RegistryVersion[ReleaseTags]:
    return _parsed(_version(RELEASE_MODEL, number), ReleaseTags)


def release_versions() -> list[RegistryVersion[ReleaseTags]]:
    """Every release, newest first."""
    return [_parsed(v, ReleaseTags) for v in _versions(RELEASE_MODEL)]


def release_alias(alias: str) -> RegistryVersion[ReleaseTags] | None:
    """The release an alias (`candidate`, `production`) points at, or None."""
    try:
        return _parsed(MlflowClient().get_model_version_by_alias(RELEASE_MODEL, alias),
                       ReleaseTags)
    except MlflowException:
        return None


def download(v: RegistryVersion, artifact_path: str, kind: str) -> Path:
    """The version's files in a local cache under FLEXO_HOME (downloaded once per version)."""
    import mlflow

    target = flexo_home() / "cache" / kind / f"{v.name}-v{v.version}"
    if not target.exists():
        with atomic_output_dir(target) as tmp:
            mlflow.artifacts.download_artifacts(f"runs:/{v.run_id}/{artifact_path}",
                                                dst_path=str(tmp))
            for item in (tmp / artifact_path).iterdir():
                item.rename(tmp / item.name)
            (tmp / artifact_path).rmdir()
    return target


# Writes

def register(name: str, artifact_path: str, tags: TagRecord, description: str = "",
             model_id: str | None = None) -> int:
    """A new version of registered model `name` whose source is the active run's
    `artifact_path` (or the logged model `model_id`).

    The version is created in one call with all its tags, so readers never see it half-tagged.
    The client API, not `mlflow.register_model`: that one prints to stderr.
    """
    client = MlflowClient()
    try:
        client.create_registered_model(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    run_id = active_run_id()
    source = f"models:/{model_id}" if model_id else f"runs:/{run_id}/{artifact_path}"
    version = client.create_model_version(name, source=source, run_id=run_id,
                                          tags=tags.to_tags(), description=description,
                                          model_id=model_id)
    return int(version.version)


def tag_version(name: str, version: int, tags: TagRecord) -> None:
    """Add a decision's tags to a version, in the record's field order (status last)."""
    client = MlflowClient()
    for key, value in tags.to_tags().items():
        client.set_model_version_tag(name, str(version), key, value)


def set_alias(name: str, alias: str, version: int) -> None:
    MlflowClient().set_registered_model_alias(name, alias, str(version))


def remove_alias(name: str, alias: str) -> None:
    MlflowClient().delete_registered_model_alias(name, alias)


def _version_store(name: str, version: int):
    """The artifact repository and path holding a version's files: its run's artifact path, or
    the logged model it was registered from."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    client = MlflowClient()
    v = client.get_model_version(name, str(version))
    if v.source.startswith("runs:/"):
        run_id, _, path = v.source.removeprefix("runs:/").partition("/")
        root = client.get_run(run_id).info.artifact_uri
        return get_artifact_repository(root), path, f"{root}/{path}"
    # a version made from a logged model: its source is `models:/<model id>` (the registry does
    # not always return `model_id` itself)
    model_id = v.model_id or v.source.removeprefix("models:/").split("/")[0]
    location = client.get_logged_model(model_id).artifact_location
    return get_artifact_repository(location), None, location


def delete_version_files(name: str, version: int) -> str:
    """Delete a version's files from the artifact store; the version and its tags stay, as the
    record. Returns the deleted location."""
    repo, path, where = _version_store(name, version)
    repo.delete_artifacts(path)
    return where


def version_files_location(name: str, version: int) -> str:
    """Where the artifact store keeps a version's files (a URI)."""
    return _version_store(name, version)[2]


def version_files_listing(name: str, version: int) -> list[str]:
    """What the artifact store still holds for a version (`[]` once deleted)."""
    repo, path, _ = _version_store(name, version)
    try:
        return [f.path for f in repo.list_artifacts(path)]
    except FileNotFoundError:
        return []

def remove_version_aliases(name: str, version: int) -> list[str]:
    client = MlflowClient()
    aliases = list(client.get_model_version(name, str(version)).aliases or [])
    for alias in aliases:
        client.delete_registered_model_alias(name, alias)
    return aliases
