"""`anchor_flow`: the operator's first step. Train the public anchor (or import one) and register
it as a version of `flexo-anchor`, tagged with its fingerprint: every module and release names
the anchor it belongs to by that fingerprint."""

from __future__ import annotations

from pathlib import Path

import mlflow
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from components.anchor import AnchorCard
from flows import tracking
from flows.registry import ANCHOR_MODEL
from flows.settings import flexo_home

EXPERIMENT = "flexo-anchor"


class AnchorRegistration(BaseModel):
    directory: Path
    version: int
    fingerprint: str
    mlflow_run_id: str
    card: AnchorCard


@task(cache_policy=NO_CACHE)
def build_anchor(out: Path, preset: str, source: str | None, seed: int,
                 device: str | None) -> AnchorCard:
    """Train on the built-in public mix, or import a checkpoint (OLMo-2 or FlexOlmo)."""
    from components.builtin_corpora import PUBLIC, load_domain

    with tracking.child_run("import" if source else "train"):
        if source:
            from components.anchor_import import import_anchor

            mlflow.log_param("source", source)
            card = import_anchor(source, out, public=lambda: load_domain(PUBLIC))
        else:
            from components.anchor import train_anchor

            mlflow.log_params({"preset": preset, "seed": seed})
            public = load_domain(PUBLIC)
            card = train_anchor(out, preset, public, seed=seed, device=device)
            tracking.log_curve("loss", card.losses)
        if card.corpus:
            tracking.log_fingerprint_input("public-mix", card.corpus.digest, "training",
                                           documents=str(card.corpus.documents))
        mlflow.log_metrics({"parameters": card.parameters, "train_tokens": card.train_tokens,
                            "train_seconds": card.train_seconds})
    get_run_logger().info("anchor %s: %d parameters, fingerprint %s", out, card.parameters,
                          card.fingerprint[:16])
    return card


@task(retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def register_anchor(directory: Path, card: AnchorCard) -> int:
    """Log the checkpoint to the flow's run and register it as a new `flexo-anchor` version."""
    from flows.versioning import code_version

    mlflow.log_artifacts(str(directory), artifact_path="anchor")
    version = tracking.register_version(
        ANCHOR_MODEL, "anchor",
        tags={"anchor_fingerprint": card.fingerprint, "source": card.source,
              "preset": card.preset or "", "parameters": str(card.parameters),
              "code_version": code_version()},
        description=f"Public anchor ({card.source}, {card.parameters:,} parameters).")
    get_run_logger().info("registered %s version %d", ANCHOR_MODEL, version)
    return version


@flow(name="anchor")
def anchor_flow(preset: str = "small", source: str | None = None, seed: int = 0,
                out: Path | None = None, device: str | None = None) -> AnchorRegistration:
    """Train (`preset`) or import (`source`: a checkpoint directory or hub id) the anchor into
    `out` (default `$FLEXO_HOME/anchors/<preset or import>-<time>`) and register it."""
    import datetime as dt

    from components.anchor import get_preset
    from components.atomic_dir import check_output_dir

    if source is None:
        get_preset(preset)  # an unknown preset fails before anything starts
    label = "import" if source else preset
    target = check_output_dir(out or flexo_home() / "anchors"
                              / f"{label}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}")
    tracking.configure()
    tracking.use_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"anchor-{label}") as run:
        mlflow.set_tags({"flexo.kind": "anchor"})
        card = build_anchor(target, preset, source, seed, device)
        version = register_anchor(target, card)
        mlflow.set_tag("flexo.anchor_version", str(version))
    return AnchorRegistration(directory=target, version=version, fingerprint=card.fingerprint,
                              mlflow_run_id=run.info.run_id, card=card)


def registered_anchor(fingerprint: str | None = None) -> Path:
    """A local copy of the newest registered anchor (or the one with `fingerprint`)."""
    from flows.registry import anchor_version, download

    return download(anchor_version(fingerprint), "anchor", "anchors")
