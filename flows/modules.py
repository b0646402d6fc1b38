"""Train one expert module into a directory with its manifest: shared by `flexo expert train` and
`contribute_flow`, so a module means the same thing whichever way it was made."""

from __future__ import annotations

import shutil
from pathlib import Path

from components.documents import Corpus
from components.expert_training import ExpertConfig, ExpertResult
from governance.manifest import ExpertManifest


def resume_dir(target: Path) -> Path:
    """Where an interrupted run keeps its checkpoints: beside the output, hidden."""
    return target.parent / f".{target.name}.resume"


def train_module(anchor: Path, contributor: str, corpus: Corpus, cfg: ExpertConfig,
                 out_dir: Path, device: str | None = None, progress: bool = True,
                 ) -> tuple[ExpertManifest, ExpertResult]:
    """Train on `corpus` (public text mixed in per `cfg`) and write `out_dir` all at once."""
    from components.atomic_dir import atomic_output_dir
    from components.builtin_corpora import PUBLIC, load_domain
    from components.expert_training import train_expert
    from flows.versioning import code_version
    from governance.manifest import DataFingerprint

    resume = resume_dir(out_dir)
    with atomic_output_dir(out_dir) as tmp:
        result = train_expert(anchor, contributor, corpus, load_domain(PUBLIC), cfg, workdir=tmp,
                              resume_dir=resume, device=device, progress=progress)
        manifest = ExpertManifest(
            contributor=contributor, anchor_fingerprint=result.anchor_fingerprint,
            weights_sha256=result.weights_sha256,
            data_fingerprint=DataFingerprint(**result.data_fingerprint.model_dump()),
            training=result.config.model_dump(), metrics=result.metrics,
            differential_privacy=result.privacy.model_dump() if result.privacy else None,
            code_version=code_version(),
        )
        manifest.write(tmp)
    shutil.rmtree(resume, ignore_errors=True)
    return manifest, result


def public_router_tuner(anchor: Path, steps: int, lr: float = 1e-3,
                        domains: dict[str, str | None] | None = None):
    """A `merge(..., tune=...)` hook: router tuning on public text only (public text is
    everyone's, so no contributor's data is needed); None when `steps` is 0.

    With `domains` (expert -> built-in domain) naming a domain for every expert, each expert gets
    the public mix's slice of its domain as proxy text and the supervised router loss; otherwise
    the routers tune on the LM loss over the public mix."""
    if steps == 0:
        return None
    from components.builtin_corpora import PRIVATE_DOMAINS, PUBLIC, load_domain, proxy_corpus
    from components.checkpoints import load_tokenizer
    from components.router_tuning import (
        RouterTuningConfig,
        public_proxy_tuner,
        supervised_proxy_tuner,
    )

    cfg = RouterTuningConfig(steps=steps, lr=lr)
    tokenizer = load_tokenizer(anchor)
    if domains and all(d in PRIVATE_DOMAINS for d in domains.values()):
        proxies = {PUBLIC: proxy_corpus(PUBLIC).split("train").texts()}
        proxies |= {name: proxy_corpus(d).split("train").texts() for name, d in domains.items()}
        return supervised_proxy_tuner(proxies, tokenizer, cfg)
    return public_proxy_tuner(load_domain(PUBLIC).split("train").texts(), tokenizer, cfg)
