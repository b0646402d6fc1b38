"""Expert modules on disk with their manifests: training one (shared by `flexo expert train` and
`contribute_flow`, so a module means the same thing whichever way it was made), checking a cached
copy, and reading the proxy text its manifest publishes (shared by `flexo merge` and
`release_flow`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from components.documents import Corpus
from components.errors import ConfigError
from components.expert_training import ExpertConfig, ExpertResult
from components.proxy_selection import ProxyConfig
from governance.manifest import ExpertManifest, ProxySelection


def resume_dir(target: Path) -> Path:
    """Where an interrupted run keeps its checkpoints: beside the output, hidden."""
    return target.parent / f".{target.name}.resume"


def train_module(anchor: Path, contributor: str, corpus: Corpus, cfg: ExpertConfig,
                 out_dir: Path, device: str | None = None, progress: bool = True,
                 proxies: ProxySelection | None = None,
                 ) -> tuple[ExpertManifest, ExpertResult]:
    """Train on `corpus` (public text mixed in per `cfg`) and write `out_dir` all at once, the
    manifest naming `proxies` when given. Under `torchrun` every process trains and rank 0
    alone writes `out_dir` (the others' copies go to a scratch directory and vanish)."""
    import tempfile

    from components import distributed
    from components.atomic import atomic_output_dir
    from components.builtin_corpora import PUBLIC, load_domain
    from components.clock import timestamp
    from components.devices import pick_device
    from components.expert_training import train_expert
    from flows.versioning import code_version
    from governance.manifest import DataFingerprint

    resume = resume_dir(out_dir)
    distributed.start(pick_device(device))
    distributed.rows_per_rank(cfg.batch_size)  # refused now, not after the router init
    if cfg.dp is not None and distributed.rank_and_size()[1] > 1:
        raise ConfigError("differentially private training runs in one process (its per-sample "
                          "clipping and noise are not split over ranks); run it without torchrun")
    main = distributed.is_main()
    with atomic_output_dir(out_dir) if main else tempfile.TemporaryDirectory() as tmp:
        result = train_expert(anchor, contributor, corpus, load_domain(PUBLIC), cfg,
                              workdir=Path(tmp), resume_dir=resume, device=device,
                              progress=progress)
        manifest = ExpertManifest(
            contributor=contributor, anchor_fingerprint=result.anchor_fingerprint,
            weights_sha256=result.weights_sha256,
            data_fingerprint=DataFingerprint(**result.data_fingerprint.model_dump()),
            training=result.config.model_dump(), metrics=result.metrics,
            differential_privacy=result.privacy.model_dump() if result.privacy else None,
            proxies=proxies, code_version=code_version(), created_at=timestamp(),
        )
        manifest.write(Path(tmp))
    if main:
        shutil.rmtree(resume, ignore_errors=True)
    return manifest, result


def choose_proxies(anchor: Path, corpus: Corpus, cfg: ProxyConfig) -> ProxySelection:
    """The contributor's proxy selection (DESIGN §1.6): its classifier, its training documents
    against `anchor`'s public pool (embeddings cached in the shared cache: public text)."""
    from components.proxy_selection import choose
    from flows.settings import shared_cache

    fingerprint, choice = choose(anchor, corpus.training_texts(), shared_cache(), cfg)
    return ProxySelection(pool_fingerprint=fingerprint, **choice.model_dump())


def intact_module(directory: Path) -> ExpertManifest | None:
    """The module's manifest if `directory` holds a whole module whose weights still hash to
    what the manifest promises; None otherwise (missing, partial or altered)."""
    from pydantic import ValidationError

    from components.expert_module import file_sha256
    from governance.manifest import MANIFEST_FILE

    if not (directory / MANIFEST_FILE).is_file():
        return None
    try:
        manifest = ExpertManifest.read(directory)
    except (ValidationError, ValueError):
        return None
    weights = directory / manifest.weights_file
    return manifest if weights.is_file() and file_sha256(weights) == manifest.weights_sha256 \
        else None


def published_proxies(anchor: Path, modules: dict[str, Path]) -> dict[str, list[str]]:
    """Public proxy text per expert for router tuning: each module's published proxy ids
    resolved in `anchor`'s public pool (the public expert gets the rest of the pool). A module
    that published no proxy selection is refused: nothing would tell the router its domain."""
    from components.errors import DataError
    from components.proxy_selection import anchor_pool, resolve_proxies

    published = {}
    for name, directory in modules.items():
        selection = ExpertManifest.read(directory).proxies
        if selection is None:
            raise DataError(f"{name}'s module publishes no proxy selection, so router tuning "
                            f"cannot learn its domain; it must contribute again with proxy "
                            f"selection on (the default)")
        published[name] = (selection.pool_fingerprint, selection.ids)
    return resolve_proxies(anchor_pool(anchor), published)
