"""`anchor_flow`: the operator's first step.

    check the target -> train (preset) or import (source), its public pool named beside it ->
    register `flexo-anchor`

Every module and release names the anchor it belongs to by the fingerprint the version is
tagged with.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from components.anchor import AnchorCard
from flows.retries import retried
from flows.settings import flexo_home
from flows.tracking import registry, runs
from governance.tags import AnchorTags

EXPERIMENT = "flexo-anchor"


class AnchorRegistration(BaseModel):
    directory: Path
    version: int
    fingerprint: str
    mlflow_run_id: str
    card: AnchorCard


@task(cache_policy=NO_CACHE)
def anchor_target(preset: str, source: str | None, out: Path | None) -> Path:
    """Where the anchor goes (default `$FLEXO_HOME/anchors/<preset or import>-<time>`); an
    unknown preset or a non-empty target fails before anything starts."""
    from components.anchor import get_preset
    from components.atomic import check_output_dir
    from components.clock import stamp

    if source is None:
        get_preset(preset)
    label = "import" if source else preset
    return check_output_dir(out or flexo_home() / "anchors" / f"{label}-{stamp()}")


@task(cache_policy=NO_CACHE)
def build_anchor(out: Path, preset: str, source: str | None, seed: int,
                 device: str | None) -> AnchorCard:
    """Train on the built-in public mix, or import a checkpoint (OLMo-2 or FlexOlmo)."""
    from components.builtin_corpora import PUBLIC, load_domain

    with runs.child_run("import" if source else "train"):
        if source:
            from components.anchor_import import import_anchor

            runs.log_params({"source": source})
            card = import_anchor(source, out, public=lambda: load_domain(PUBLIC))
        else:
            from components.anchor import train_anchor

            runs.log_params({"preset": preset, "seed": seed})
            card = train_anchor(out, preset, load_domain(PUBLIC), seed=seed, device=device)
            runs.log_curve("loss", card.losses)
        if card.corpus:
            runs.log_fingerprint_input("public-mix", card.corpus.digest, "training",
                                       documents=str(card.corpus.documents))
        pool = name_public_pool(out)
        runs.log_metrics({"parameters": card.parameters, "train_tokens": card.train_tokens,
                          "train_seconds": card.train_seconds})
    get_run_logger().info("anchor %s: %d parameters, fingerprint %s; public pool %s, %d "
                          "documents", out, card.parameters, card.fingerprint[:16],
                          pool["fingerprint"][:12], len(pool["documents"]))
    return card


def name_public_pool(anchor: Path) -> dict:
    """Write the anchor's public pool (document ids, sources, licences, fingerprint) beside its
    weights: registered with it, downloaded with it, what proxy ids refer to."""
    import json

    from components.atomic import atomic_write
    from components.builtin_corpora import public_pool_index
    from components.proxy_selection import POOL_FILE

    pool = public_pool_index()
    atomic_write(anchor / POOL_FILE, json.dumps(pool, indent=0) + "\n")
    return pool


@task(**retried(2))
def register_anchor(directory: Path, card: AnchorCard) -> int:
    """Log the checkpoint to the flow's run and register it as a new `flexo-anchor` version."""
    from flows.versioning import code_version

    runs.log_artifacts(directory, "anchor")
    version = registry.register(
        registry.ANCHOR_MODEL, "anchor",
        AnchorTags(anchor_fingerprint=card.fingerprint, source=card.source,
                   preset=card.preset or "", parameters=card.parameters,
                   code_version=code_version()),
        description=f"Public anchor ({card.source}, {card.parameters:,} parameters).")
    runs.set_tags({"flexo.anchor_version": str(version)})
    get_run_logger().info("registered %s version %d", registry.ANCHOR_MODEL, version)
    return version


@flow(name="anchor")
def anchor_flow(preset: str = "small", source: str | None = None, seed: int = 0,
                out: Path | None = None, device: str | None = None) -> AnchorRegistration:
    """Train (`preset`) or import (`source`: a checkpoint directory or hub id) the anchor into
    `out` and register it."""
    target = anchor_target(preset, source, out)
    label = "import" if source else preset
    with runs.flow_run(EXPERIMENT, f"anchor-{label}", {"flexo.kind": "anchor"}) as run_id:
        card = build_anchor(target, preset, source, seed, device)
        version = register_anchor(target, card)
    return AnchorRegistration(directory=target, version=version, fingerprint=card.fingerprint,
                              mlflow_run_id=run_id, card=card)


def registered_anchor(fingerprint: str | None = None) -> Path:
    """A local copy of the newest registered anchor (or the one with `fingerprint`)."""
    runs.configure()
    return registry.download(registry.anchor_version(fingerprint), "anchor", "anchors")
