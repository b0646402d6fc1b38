"""`flexo release`: merge the approved modules, evaluate, gate and register a release."""

from __future__ import annotations

from typing import Annotated

import typer

from components.errors import GovernanceError
from flows.cli.app import FLOW_LIBRARIES, app, command, out
from flows.cli.console import StoryDisplay, current_log
from flows.cli.render import log_hint, release_figures


@command(app, log=FLOW_LIBRARIES)
def release(
    top_k: Annotated[int | None, typer.Option(help="Experts per token (default: all).")] = None,
    rt_steps: Annotated[int, typer.Option(help="Router-tuning steps (0: none).")] = 30,
    max_public_increase: Annotated[float, typer.Option(
        help="Gate: allowed rise of public perplexity.")] = 0.10,
    eval_tokens: Annotated[int, typer.Option(help="Held-out tokens per domain.")] = 16_384,
) -> None:
    """Merge the approved modules, evaluate, gate and register a flexo-release version."""
    from flows.release import ReleaseConfig, release_flow

    cfg = ReleaseConfig(top_k=top_k, router_tuning_steps=rt_steps,
                        max_public_increase=max_public_increase, eval_max_tokens=eval_tokens)
    with StoryDisplay(out):
        result = release_flow(cfg)
    release_figures(result.record.figures, f"flexo-release version {result.version}")
    log_hint(current_log())
    if not result.promoted:
        raise GovernanceError(f"gate failed ({'; '.join(result.record.gate.failures())}); "
                              f"version {result.version} stays a candidate, production unchanged")
    out.print(f"flexo-release version {result.version} is production; files in {result.directory}")
