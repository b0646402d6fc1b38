"""`flexo release`: build a candidate release from the approved modules; `flexo release status`:
who has accepted it; `flexo release promote`: move `production` once everyone has."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from components.errors import GovernanceError
from flows.cli.app import FLOW_LIBRARIES, command, out, sub_app
from flows.cli.console import StoryDisplay, current_log
from flows.cli.options import OperatorOpt
from flows.cli.render import log_hint, release_figures

release_app = sub_app("release", "Build a candidate release; see who accepted it; promote it.",
                      no_args_is_help=False)
ReleaseOpt = Annotated[int | None, typer.Option(
    "--release", help="flexo-release version (default: the candidate).")]


@command(release_app, log=FLOW_LIBRARIES, default=True)
def release(
    ctx: typer.Context,
    top_k: Annotated[int | None, typer.Option(help="Experts per token (default: all).")] = None,
    rt_steps: Annotated[int | None, typer.Option(
        help="Router-tuning steps on the modules' published proxies (0: the untuned merge; "
             "default: 200).")] = None,
    max_public_increase: Annotated[float, typer.Option(
        help="Gate: allowed rise of public perplexity.")] = 0.02,
    eval_tokens: Annotated[int, typer.Option(help="Held-out tokens per domain.")] = 16_384,
    actor: OperatorOpt = "operator",
) -> None:
    """Merge the approved modules, evaluate, gate and register a candidate flexo-release
    (operators only)."""
    from flows.policy import require_operator_for
    from flows.release import ReleaseConfig, release_flow

    cfg = ReleaseConfig(top_k=top_k, max_public_increase=max_public_increase,
                        eval_max_tokens=eval_tokens,
                        **({} if rt_steps is None else {"router_tuning_steps": rt_steps}))
    require_operator_for(actor, "flexo-release", "release")
    with StoryDisplay(out):
        result = release_flow(cfg, actor=actor)
    release_figures(result.record.figures, f"flexo-release version {result.version}")
    log_hint(current_log())
    if not result.gate_passed:
        raise GovernanceError(f"gate failed ({'; '.join(result.record.gate.failures())}); "
                              f"version {result.version} stays a candidate that cannot be "
                              f"promoted")
    contributors = ", ".join(e.contributor for e in result.record.experts)
    out.print(f"flexo-release version {result.version} is the candidate; production moves when "
              f"{contributors} accept it (`flexo accept --release {result.version} ...`); files "
              f"in {result.directory}")


@command(release_app, "status", log=("mlflow",))
def release_status(version: ReleaseOpt = None) -> None:
    """Who has accepted, rejected or not yet answered a release."""
    from flows.promote import release_answers

    record, answers = release_answers(version)
    table = Table(title=f"flexo-release version {record.version} "
                        f"({', '.join(record.aliases) or 'no alias'}; gate {record.tags.gate})")
    for col in ("contributor", "answer", "own-domain change", "own routing", "public routing",
                "answered at"):
        table.add_column(col, justify="left" if col in ("contributor", "answer") else "right")
    for contributor, a in answers.items():
        if a is None:
            table.add_row(contributor, "not yet", "", "", "", "")
        else:
            table.add_row(contributor, a.verdict, f"{a.change:+.1%}",
                          f"{a.own_routing_share:.0%}", f"{a.public_routing_share:.0%}",
                          a.answered_at)
    out.print(table)


@command(release_app, "promote", log=FLOW_LIBRARIES)
def release_promote(version: ReleaseOpt = None, actor: OperatorOpt = "operator") -> None:
    """Make a release production if every contributor in it has accepted it (operators only)."""
    from flows.policy import require_operator_for
    from flows.promote import promote_flow

    require_operator_for(actor, "flexo-release", "promote")
    with StoryDisplay(out):
        result = promote_flow(version, actor=actor)
    if not result.promoted:
        raise GovernanceError(f"flexo-release version {result.version} not promoted: "
                              f"{'; '.join(result.blockers)}")
    out.print(f"flexo-release version {result.version} is production")
