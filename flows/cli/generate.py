"""`flexo generate`: text from a release (or any merged model) with any allowed subset of experts."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from components.errors import CheckpointError
from flows.cli.app import app, command, out
from flows.cli.options import as_option
from flows.cli.render import attribution_table


class Attribution(StrEnum):
    routing = "routing"
    loo = "loo"


@command(app)
def generate(
    prompt: Annotated[str, typer.Option(help="Text to continue.")],
    model: Annotated[Path | None, typer.Option(help="Model directory (default: the production "
                                               "release under FLEXO_HOME).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Switch this expert off (repeat).")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Use only these experts (repeat).")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate.")] = 40,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    greedy: Annotated[bool, typer.Option(help="Greedy decoding instead of sampling.")] = False,
    attribution: Annotated[Attribution | None, typer.Option(
        help="Print each expert's part in the output: routing weight shares, or with `loo` also "
             "the log-likelihood drop when each expert is masked (n+1 passes).")] = None,
    consumer: Annotated[str, as_option("Who generates: the experts the policy entitles it to, "
                                       "and the attribution record.")] = "local",
) -> None:
    """Generate with any allowed subset of experts; the mask changes nothing on disk. Every
    generation appends an attribution record (numbers only) under FLEXO_HOME."""
    from flows.settings import flexo_home

    directory = model or flexo_home() / "releases" / "production"
    if not directory.exists():
        raise CheckpointError(f"no model at {directory}; pass --model DIR (a merged model or an "
                              f"anchor)")
    import torch

    from components.checkpoints import load_config, load_tokenizer
    from components.runtime import apply_selection, expert_names, load_flexo_model, selection
    from flows.policy import consumer_selection
    from flows.withdrawals import denied, deny_list_path, refuse_denied

    names = expert_names(load_config(directory))
    refuse_denied(consumer, only or [])  # asked for by name: refused (an entitled default that
    # holds a withdrawn expert is served with it masked, below)
    only = consumer_selection(consumer, directory.resolve().name, only, names[1:])
    selection(names, only, exclude)  # unknown ids fail before any weight is loaded
    net = load_flexo_model(directory, deny_list=deny_list_path())  # re-read on every pass
    gone = denied()  # read once, not once per expert
    active = [on and n not in gone
              for n, on in zip(names, apply_selection(net, only=only, exclude=exclude),
                               strict=True)]
    tokenizer = load_tokenizer(directory)
    torch.manual_seed(seed)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    output = net.generate(ids, max_new_tokens=max_new_tokens, do_sample=not greedy, top_k=50,
                          top_p=0.95, pad_token_id=tokenizer.pad_token_id)
    out.print(tokenizer.decode(output[0], skip_special_tokens=True), highlight=False)
    on = [n for n, flag in zip(names, active, strict=True) if flag]
    out.print(f"[dim]experts on: {', '.join(on)}[/dim]")
    if output.shape[1] > ids.shape[1]:  # something was generated to attribute
        from flows.attribution import record_generation

        shares = record_generation(net, output, ids.shape[1], directory.resolve().name, on,
                                   consumer, loo=attribution == Attribution.loo)
        if attribution is not None:
            out.print(attribution_table(shares))
