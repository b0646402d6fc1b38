"""`flexo expert train`: one expert module against the anchor, outside the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from components.errors import ConfigError
from flows.cli.app import checked_contributor, command, out, sub_app
from flows.cli.options import (
    ContributorOpt,
    DeviceOpt,
    OutOpt,
    PrivateDomain,
    ProxyTokensOpt,
    expert_options,
    proxy_config,
)

expert_app = sub_app("expert", "Expert modules (the contributor's step).")


@command(expert_app, "train")
@expert_options
def expert_train(
    contributor: ContributorOpt,
    anchor: Annotated[Path, typer.Option(help="Anchor checkpoint directory.")],
    out_dir: OutOpt,
    expert,  # ExpertConfig, from the shared expert-training options
    data: Annotated[Path | None, typer.Option(help="Your text: .txt/.md/.jsonl files.")] = None,
    domain: Annotated[PrivateDomain | None, typer.Option(
        help="A built-in domain instead of --data.")] = None,
    uncoordinated: Annotated[bool, typer.Option(
        help="Baseline only: let shared tensors train too (merges then average them).")] = False,
    proxy_tokens: ProxyTokensOpt = 0,  # `contribute` selects by default; here it is asked for
    device: DeviceOpt = None,
) -> None:
    """Train one expert module against the anchor (coordinated training); no registry."""
    from components.atomic import check_output_dir
    from components.expert_training import ExpertConfig

    checked_contributor(contributor)
    if (data is None) == (domain is None):
        raise ConfigError("pass exactly one of --data DIR or --domain NAME")
    cfg = ExpertConfig.model_validate(expert.model_dump() | {"uncoordinated": uncoordinated})
    proxy_cfg = proxy_config(proxy_tokens, cfg.seed)
    check_output_dir(out_dir)
    from components.anchor import read_fingerprint
    from components.builtin_corpora import load_domain
    from components.user_data import load_directory
    from flows.modules import choose_proxies, train_module

    read_fingerprint(anchor)  # a wrong or edited anchor fails before any text is read
    corpus = load_directory(data) if data is not None else load_domain(domain.value)
    proxies = choose_proxies(anchor, corpus, proxy_cfg) if proxy_cfg else None
    manifest, _ = train_module(anchor, contributor, corpus, cfg, out_dir, device=device,
                               proxies=proxies)
    from components import distributed

    if distributed.is_main():  # under torchrun, one line, from the rank that wrote the module
        out.print(f"expert module for {contributor} written to {out_dir} "
                  f"(final loss {manifest.metrics['final_loss']:.3f}, "
                  f"weights {manifest.weights_sha256[:16]})")
