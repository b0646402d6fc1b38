"""A release in the registry: the HF checkpoint logged as a pyfunc model (models-from-code,
`release_model.py`), registered as a `flexo-release` version with its tags, then the aliases."""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

import mlflow

from components.atomic import atomic_output_dir
from components.clock import timestamp
from flows.settings import flexo_home
from flows.tracking import registry
from flows.tracking.runs import active_run_id
from governance.tags import PromotionTags, ReleaseTags

MODEL_CODE = Path(__file__).with_name("release_model.py")  # the pyfunc, as models-from-code
REQUIRED = ("flexo", "torch", "transformers", "safetensors", "mlflow")  # what the pyfunc imports


def _pinned(*distributions: str) -> list[str]:
    """Each distribution at the version that logs the model (local labels such as `+cpu`
    dropped), as MLflow's own inference pins them: a fresh environment with the project
    installed resolves to what was tested, not to whatever is newest."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in distributions]


# What a request may pass as `params` (MLflow drops any not in the signature). The example is
# also run once at logging time: the model is loaded and generates before it is registered.
EXAMPLE_PROMPTS = ["The patient"]
EXAMPLE_PARAMS = {"max_new_tokens": 8, "only": "", "exclude": "", "temperature": 0.0, "seed": 0,
                  "attribution": ""}


def register_release(directory: Path, tags: ReleaseTags, release_json: dict) -> int:
    """Log the checkpoint as a pyfunc model of the active run and register it, tags and all, in
    one call; then alias it `candidate` (`production` waits for the contributors' acceptance).
    A retry finds the version its first attempt made (by release run) instead of making a
    second."""
    run_id = active_run_id()
    for existing in registry.release_versions():
        if existing.tags.release_run_id == run_id:  # a retry after the version was made
            registry.set_alias(registry.RELEASE_MODEL, "candidate", existing.version)
            return existing.version
    mlflow.log_dict(release_json, "release.json")
    info = mlflow.pyfunc.log_model(name="release", python_model=str(MODEL_CODE),
                                   artifacts={"checkpoint": str(directory)},
                                   pip_requirements=_pinned(*REQUIRED),
                                   input_example=(EXAMPLE_PROMPTS, EXAMPLE_PARAMS))
    version = registry.register(registry.RELEASE_MODEL, "release", tags,
                                description="A flexo release: a FlexOlmo mixture of experts.",
                                model_id=info.model_id)
    registry.set_alias(registry.RELEASE_MODEL, "candidate", version)
    return version


def promote(version: int) -> None:
    """Move `production` to `version`, recording when (OSS MLflow keeps no alias history)."""
    registry.tag_version(registry.RELEASE_MODEL, version,
                         PromotionTags(production_since=timestamp()))
    registry.set_alias(registry.RELEASE_MODEL, "production", version)


def download_checkpoint(version: int) -> Path:
    """Release `version`'s HF checkpoint (the pyfunc's `checkpoint` artifact) in a local cache
    under FLEXO_HOME, downloaded once per version: what a contributor evaluates."""
    target = flexo_home() / "cache" / "releases" / f"{registry.RELEASE_MODEL}-v{version}"
    if not target.exists():
        with atomic_output_dir(target) as tmp:
            (tmp / "model").mkdir()
            model = Path(mlflow.artifacts.download_artifacts(
                f"models:/{registry.RELEASE_MODEL}/{version}", dst_path=str(tmp / "model")))
            pyfunc = mlflow.models.Model.load(model / "MLmodel").flavors["python_function"]
            (model / pyfunc["artifacts"]["checkpoint"]["path"]).rename(tmp / "checkpoint")
            shutil.rmtree(model)
    return target / "checkpoint"
