"""`flexo expert train`, `flexo merge` and `flexo generate`: modules outside the registry."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from components.errors import CheckpointError, ConfigError
from flows.cli_app import app, checked_contributor, expert_app, friendly_errors, out


def _resume_dir(target: Path) -> Path:
    """Where an interrupted run keeps its checkpoints: beside the output, hidden."""
    return target.parent / f".{target.name}.resume"


@expert_app.command("train")
@friendly_errors
def expert_train(
    contributor: Annotated[str, typer.Option(help="Contributor id: 2-40 of a-z, 0-9, '-'.")],
    anchor: Annotated[Path, typer.Option(help="Anchor checkpoint directory.")],
    out_dir: Annotated[Path, typer.Option("--out", help="New directory for the module.")],
    data: Annotated[Path | None, typer.Option(help="Your text: .txt/.md/.jsonl files.")] = None,
    domain: Annotated[str | None, typer.Option(help="A built-in domain instead of --data.")] = None,
    router_init: Annotated[str, typer.Option(help="embed | hidden | random")] = "embed",
    steps: Annotated[int | None, typer.Option(help="Training steps [default: 200].")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate [default: 4e-3].")] = None,
    public_ratio: Annotated[float | None, typer.Option(
        help="Share of public text per batch [default: 0.4].")] = None,
    router_docs: Annotated[int | None, typer.Option(
        help="Documents per domain for the router init [default: 1000].")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    uncoordinated: Annotated[bool, typer.Option(
        help="Baseline only: let shared tensors train too (merges then average them).")] = False,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if any).")] = None,
) -> None:
    """Train one expert module against the anchor (coordinated training); no registry."""
    from pydantic import ValidationError

    from components.atomic_dir import atomic_output_dir, check_output_dir
    from components.expert_training import ExpertConfig

    checked_contributor(contributor)
    if (data is None) == (domain is None):
        raise ConfigError("pass exactly one of --data DIR or --domain NAME")
    given = {"steps": steps, "lr": lr, "public_ratio": public_ratio,
             "router_documents": router_docs}
    try:
        cfg = ExpertConfig(seed=seed, router_init=router_init, uncoordinated=uncoordinated,
                           **{k: v for k, v in given.items() if v is not None})
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"invalid option {first['loc'][0]}: {first['msg']}") from None
    check_output_dir(out_dir)
    from components.anchor import read_fingerprint
    from components.builtin_corpora import PUBLIC, load_domain
    from components.expert_training import train_expert
    from components.user_data import load_directory
    from flows.versioning import code_version
    from governance.manifest import DataFingerprint, ExpertManifest

    read_fingerprint(anchor)  # a wrong or edited anchor fails before any text is read
    corpus = load_directory(data) if data is not None else load_domain(domain)
    public = load_domain(PUBLIC)
    resume = _resume_dir(out_dir)
    with atomic_output_dir(out_dir) as tmp:
        result = train_expert(anchor, contributor, corpus, public, cfg, workdir=tmp,
                              resume_dir=resume, device=device)
        ExpertManifest(
            contributor=contributor, anchor_fingerprint=result.anchor_fingerprint,
            weights_sha256=result.weights_sha256,
            data_fingerprint=DataFingerprint(**result.data_fingerprint.model_dump()),
            training=result.config.model_dump(), metrics=result.metrics,
            code_version=code_version(),
        ).write(tmp)
    shutil.rmtree(resume, ignore_errors=True)
    out.print(f"expert module for {contributor} written to {out_dir} "
              f"(final loss {result.metrics['final_loss']:.3f}, "
              f"weights {result.weights_sha256[:16]})")


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
    tune = None
    if router_tuning:
        tune = _router_tuner(anchor, rt_steps)
    from components.merge import merge as merge_modules

    record = merge_modules(anchor, refs, out_dir, top_k=top_k, tune=tune)
    out.print(f"merged {len(refs)} experts ({', '.join(r.name for r in refs)}) into {out_dir}, "
              f"top-{record.top_k}, plan {record.plan_digest[:12]}")


def _router_tuner(anchor: Path, steps: int):
    from components.builtin_corpora import PUBLIC, load_domain
    from components.checkpoints import load_tokenizer
    from components.router_tuning import RouterTuningConfig, tune_routers
    from components.token_data import token_stream

    cfg = RouterTuningConfig(steps=steps)
    proxy = token_stream(load_domain(PUBLIC).split("train").texts(), load_tokenizer(anchor),
                         max_tokens=cfg.steps * cfg.batch_size * cfg.seq_len * 2)

    def tune(state, bias, config):
        return tune_routers(state, bias, config, proxy, cfg)

    return tune


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
