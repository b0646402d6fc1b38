"""`flexo expert train`, `flexo merge` and `flexo generate`: modules outside the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from components.errors import CheckpointError, ConfigError
from flows import cli_options as opts
from flows.cli_app import app, checked_contributor, expert_app, friendly_errors, out


@expert_app.command("train")
@friendly_errors
def expert_train(
    contributor: Annotated[str, typer.Option(help="Contributor id: 2-40 of a-z, 0-9, '-'.")],
    anchor: Annotated[Path, typer.Option(help="Anchor checkpoint directory.")],
    out_dir: Annotated[Path, typer.Option("--out", help="New directory for the module.")],
    data: Annotated[Path | None, typer.Option(help="Your text: .txt/.md/.jsonl files.")] = None,
    domain: Annotated[str | None, typer.Option(help="A built-in domain instead of --data.")] = None,
    router_init: opts.RouterInitOpt = "embed",
    steps: opts.StepsOpt = None,
    lr: opts.LrOpt = None,
    public_ratio: opts.PublicRatioOpt = None,
    router_docs: opts.RouterDocsOpt = None,
    seed: opts.SeedOpt = 0,
    dp_epsilon: opts.DpEpsilonOpt = None,
    dp_delta: opts.DpDeltaOpt = None,
    dp_max_grad_norm: opts.DpClipOpt = 1.0,
    uncoordinated: Annotated[bool, typer.Option(
        help="Baseline only: let shared tensors train too (merges then average them).")] = False,
    device: opts.DeviceOpt = None,
) -> None:
    """Train one expert module against the anchor (coordinated training); no registry."""
    from components.atomic_dir import check_output_dir

    checked_contributor(contributor)
    if (data is None) == (domain is None):
        raise ConfigError("pass exactly one of --data DIR or --domain NAME")
    cfg = opts.expert_config(seed=seed, router_init=router_init, steps=steps, lr=lr,
                             public_ratio=public_ratio, router_docs=router_docs,
                             dp_epsilon=dp_epsilon, dp_delta=dp_delta,
                             dp_max_grad_norm=dp_max_grad_norm, uncoordinated=uncoordinated)
    check_output_dir(out_dir)
    from components.anchor import read_fingerprint
    from components.builtin_corpora import load_domain
    from components.user_data import load_directory
    from flows.modules import train_module

    read_fingerprint(anchor)  # a wrong or edited anchor fails before any text is read
    corpus = load_directory(data) if data is not None else load_domain(domain)
    manifest, _ = train_module(anchor, contributor, corpus, cfg, out_dir, device=device)
    out.print(f"expert module for {contributor} written to {out_dir} "
              f"(final loss {manifest.metrics['final_loss']:.3f}, "
              f"weights {manifest.weights_sha256[:16]})")


def module_refs(directories: list[Path]) -> list:
    """ModuleRefs from module directories, through their manifests (governance's record)."""
    from pydantic import ValidationError

    from components.expert_module import ModuleRef
    from governance.manifest import MANIFEST_FILE, ExpertManifest

    refs = []
    for directory in directories:
        if not (directory / MANIFEST_FILE).is_file():
            raise CheckpointError(f"{directory} has no {MANIFEST_FILE}; pass a module directory "
                                  f"written by `flexo expert train`")
        try:
            manifest = ExpertManifest.read(directory)
        except (ValidationError, ValueError) as e:
            raise CheckpointError(f"{directory / MANIFEST_FILE} is not a valid manifest "
                                  f"({str(e).splitlines()[0]}); re-publish the module") from None
        refs.append(ModuleRef(name=manifest.contributor, directory=directory,
                              weights_sha256=manifest.weights_sha256))
    return refs


@app.command()
@friendly_errors
def merge(
    anchor: Annotated[Path, typer.Option(help="Anchor checkpoint directory.")],
    expert: Annotated[list[Path], typer.Option(help="Module directory (repeat, in order).")],
    out_dir: Annotated[Path, typer.Option("--out", help="New directory for the merged model.")],
    top_k: Annotated[int, typer.Option(help="Experts active per token.")] = 2,
    router_tuning: Annotated[bool, typer.Option(help="Tune router rows and biases on public "
                                                "proxy text after merging.")] = False,
    rt_steps: Annotated[int, typer.Option(help="Router-tuning steps.")] = 50,
) -> None:
    """Merge the anchor and expert modules into one FlexOlmo checkpoint (HF format)."""
    from components.atomic_dir import check_output_dir

    if top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}")
    check_output_dir(out_dir)
    refs = module_refs(expert)
    from flows.modules import public_router_tuner

    tune = public_router_tuner(anchor, rt_steps) if router_tuning else None
    from components.merge import merge as merge_modules

    record = merge_modules(anchor, refs, out_dir, top_k=top_k, tune=tune)
    out.print(f"merged {len(refs)} experts ({', '.join(r.name for r in refs)}) into {out_dir}, "
              f"top-{record.top_k}, plan {record.plan_digest[:12]}")


@app.command()
@friendly_errors
def generate(
    prompt: Annotated[str, typer.Option(help="Text to continue.")],
    model: Annotated[Path | None, typer.Option(help="Model directory (default: the production "
                                               "release under FLEXO_HOME).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Switch this expert off (repeat).")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Use only these experts (repeat).")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate.")] = 40,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    greedy: Annotated[bool, typer.Option(help="Greedy decoding instead of sampling.")] = False,
) -> None:
    """Generate with any allowed subset of experts; the mask changes nothing on disk."""
    from flows.settings import flexo_home

    directory = model or flexo_home() / "releases" / "production"
    if not directory.exists():
        raise CheckpointError(f"no model at {directory}; pass --model DIR (a merged model or an "
                              f"anchor)")
    import torch

    from components.checkpoints import load_config, load_tokenizer
    from components.runtime import apply_selection, expert_names, load_flexo_model, selection

    names = expert_names(load_config(directory))
    selection(names, only, exclude)  # unknown ids fail before any weight is loaded
    net = load_flexo_model(directory)
    active = apply_selection(net, only=only, exclude=exclude)
    tokenizer = load_tokenizer(directory)
    torch.manual_seed(seed)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    output = net.generate(ids, max_new_tokens=max_new_tokens, do_sample=not greedy, top_k=50,
                          top_p=0.95, pad_token_id=tokenizer.pad_token_id)
    out.print(tokenizer.decode(output[0], skip_special_tokens=True), highlight=False)
    on = [n for n, flag in zip(names, active, strict=True) if flag]
    out.print(f"[dim]experts on: {', '.join(on)}[/dim]")
