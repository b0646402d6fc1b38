"""The release flow's dealings with the registry: which modules go in, fetching them against
their approved hashes, and registering the result as a `flexo-release` version."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from pydantic import BaseModel

from components.errors import CheckpointError
from components.expert_module import ModuleRef
from flows import registry
from governance.release import ReleasedExpert, ReleaseRecord

MODEL_CODE = Path(__file__).with_name("release_model.py")  # the pyfunc, as models-from-code
PIP_REQUIREMENTS = ["flexo", "torch==2.13.0", "transformers", "safetensors", "mlflow"]


class Selection(BaseModel):
    anchor_version: int
    anchor_fingerprint: str
    experts: list[ReleasedExpert]
    excluded: dict[str, str]  # contributor -> why they are not in


def select() -> Selection:
    """The newest anchor and, per contributor, the newest approved version trained on it."""
    anchor = registry.anchor_version()
    fingerprint = anchor.tags["anchor_fingerprint"]
    experts, excluded = [], {}
    for contributor in registry.contributors():
        found = registry.versions(registry.expert_model(contributor))
        statuses = [v.tags.get("approval_status", "pending") for v in found]
        approved = [v for v, s in zip(found, statuses, strict=True) if s == "approved"]
        if not approved:
            excluded[contributor] = ("withdrawn" if "withdrawn" in statuses else
                                     f"no approved version ({statuses.count('pending')} pending)")
            continue
        v = approved[0]
        if v.tags.get("anchor_fingerprint") != fingerprint:
            excluded[contributor] = (f"version {v.version} was trained on another anchor "
                                     f"({v.tags.get('anchor_fingerprint', '?')[:12]})")
            continue
        experts.append(ReleasedExpert(
            contributor=contributor, registered_model=v.name, version=int(v.version),
            weights_sha256=v.tags["weights_sha256"], data_fingerprint=v.tags["data_fingerprint"],
            domain=v.tags.get("domain") or None, reviewed_by=v.tags.get("reviewed_by", "?"),
            reviewer_kind=v.tags.get("reviewer_kind", "?"), contribute_run_id=v.run_id))
    return Selection(anchor_version=int(anchor.version), anchor_fingerprint=fingerprint,
                     experts=experts, excluded=excluded)


def fetch(anchor_version: int, experts: list[ReleasedExpert]) -> tuple[Path, list[ModuleRef]]:
    """Local copies; a module whose weights differ from what the reviewer approved is refused."""
    from components.expert_module import file_sha256
    from governance.manifest import ExpertManifest

    anchor = registry.download(registry.version(registry.ANCHOR_MODEL, anchor_version), "anchor",
                               "anchors")
    refs = []
    for e in experts:
        directory = registry.download(registry.version(e.registered_model, e.version), "module",
                                      "modules")
        manifest = ExpertManifest.read(directory)
        actual = file_sha256(directory / manifest.weights_file)
        if actual != e.weights_sha256:
            raise CheckpointError(f"{e.registered_model} version {e.version}: weights "
                                  f"{actual[:12]} differ from the approved {e.weights_sha256[:12]}; "
                                  f"the module must be re-published and reviewed")
        refs.append(ModuleRef(name=e.contributor, directory=directory,
                              weights_sha256=e.weights_sha256))
    return anchor, refs


def register(directory: Path, record: ReleaseRecord, evaluation_run_id: str) -> int:
    """Log the checkpoint as a pyfunc model of the active run and register it, tags and all, in
    one call; then alias `candidate`, and `production` when the gate passed. A retry finds the
    version its first attempt made (by release run) instead of making a second."""
    from mlflow.models import infer_signature

    run_id = mlflow.active_run().info.run_id
    for existing in registry.versions(registry.RELEASE_MODEL):
        if existing.tags.get("release_run_id") == run_id:  # a retry after the version was made
            return _set_aliases(int(existing.version), record.gate.passed)
    mlflow.log_dict(record.model_dump(mode="json"), "release.json")
    signature = infer_signature(["a prompt"], ["a continuation"],
                                params={"max_new_tokens": 32, "exclude": ""})
    info = mlflow.pyfunc.log_model(name="release", python_model=str(MODEL_CODE),
                                   artifacts={"checkpoint": str(directory)},
                                   pip_requirements=PIP_REQUIREMENTS, signature=signature)
    tags = {"anchor_version": str(record.anchor_version),
            "anchor_fingerprint": record.anchor_fingerprint,
            "experts": ",".join(f"{e.contributor}:{e.version}" for e in record.experts),
            "excluded": ",".join(record.excluded), "gate": "passed" if record.gate.passed
            else "failed", "plan_digest": record.plan_digest,
            "release_run_id": run_id,
            "evaluation_run_id": evaluation_run_id, "code_version": record.code_version}
    version = int(mlflow.register_model(info.model_uri, registry.RELEASE_MODEL, tags=tags).version)
    return _set_aliases(version, record.gate.passed)


def _set_aliases(version: int, promoted: bool) -> int:
    MlflowClient().set_registered_model_alias(registry.RELEASE_MODEL, "candidate", str(version))
    if promoted:
        promote(version)
    return version


def promote(version: int) -> None:
    """Move `production` to `version`, recording when (OSS MLflow keeps no alias history)."""
    import datetime as dt

    client = MlflowClient()
    client.set_model_version_tag(registry.RELEASE_MODEL, str(version), "production_since",
                                 dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    client.set_registered_model_alias(registry.RELEASE_MODEL, "production", str(version))


def install(build: Path, version: int, promoted: bool) -> Path:
    """Move the build to `$FLEXO_HOME/releases/v<N>`; point `releases/production` at it when
    promoted (what `flexo generate` loads by default)."""
    target = build.with_name(f"v{version}")
    build.rename(target)
    if promoted:
        link = target.with_name("production")
        tmp = target.with_name(".production.partial")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target.name)
        os.replace(tmp, link)  # atomic: readers see the old or the new release, never neither
    return target
