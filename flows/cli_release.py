"""`flexo review`, `flexo release`, `flexo withdraw` and `flexo lineage`: the registry side."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from components.errors import GovernanceError
from flows.cli_app import app, checked_contributor, friendly_errors, out, quiet_console

review_app = typer.Typer(help="Review expert-module versions.", no_args_is_help=True)
app.add_typer(review_app, name="review")

AsOpt = Annotated[str, typer.Option("--as", help="Your declared reviewer name.")]
ContributorOpt = Annotated[str, typer.Option(help="Contributor id.")]
VersionOpt = Annotated[int, typer.Option(help="Version of flexo-expert-<contributor>.")]
NoteOpt = Annotated[str, typer.Option(help="A short note kept with the decision.")]


def _prefect() -> None:
    """Prefect's defaults before it is imported; flexo's own errors stay one line."""
    from flows.settings import prepare_prefect

    prepare_prefect()
    quiet_console()


@review_app.command("declare")
@friendly_errors
def review_declare(
    name: AsOpt,
    demo: Annotated[bool, typer.Option(help="A demo reviewer: recorded as such on every "
                                       "decision.")] = False,
    organisation: Annotated[str, typer.Option(help="Who the reviewer works for.")] = "",
) -> None:
    """Declare a reviewer (reviews by undeclared names are refused)."""
    from flows.review import declare_reviewer

    reviewer = declare_reviewer(checked_contributor(name), "demo" if demo else "human",
                                organisation)
    out.print(f"declared reviewer {reviewer.name} ({reviewer.kind})")


@review_app.command("list")
@friendly_errors
def review_list() -> None:
    """Every module version and its review state."""
    from flows.review import version_rows

    rows = version_rows()
    table = Table(title="Expert module versions")
    for col in ("contributor", "version", "status", "reviewed_by", "domain", "weights"):
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(row[c]) for c in ("contributor", "version", "status", "reviewed_by",
                                              "domain", "weights")))
    out.print(table if rows else "no module versions registered yet")


def _decide(contributor: str, version: int, reviewer: str, decision: str, note: str) -> None:
    _prefect()
    from flows.review import record_review

    review = record_review(checked_contributor(contributor), version, reviewer, decision, note)
    out.print(f"flexo-expert-{contributor} version {version} {decision} by {review.reviewer.name} "
              f"({review.reviewer.kind})")


@review_app.command("approve")
@friendly_errors
def review_approve(contributor: ContributorOpt, version: VersionOpt, reviewer: AsOpt,
                   note: NoteOpt = "") -> None:
    """Approve a pending version (emits flexo.expert.approved)."""
    _decide(contributor, version, reviewer, "approved", note)


@review_app.command("reject")
@friendly_errors
def review_reject(contributor: ContributorOpt, version: VersionOpt, reviewer: AsOpt,
                  note: NoteOpt = "") -> None:
    """Reject a pending version."""
    _decide(contributor, version, reviewer, "rejected", note)


@app.command()
@friendly_errors
def release(
    top_k: Annotated[int | None, typer.Option(help="Experts per token (default: all).")] = None,
    rt_steps: Annotated[int, typer.Option(help="Router-tuning steps (0: none).")] = 30,
    max_public_increase: Annotated[float, typer.Option(
        help="Gate: allowed rise of public perplexity.")] = 0.10,
    eval_tokens: Annotated[int, typer.Option(help="Held-out tokens per domain.")] = 16_384,
) -> None:
    """Merge the approved modules, evaluate, gate and register a flexo-release version."""
    _prefect()
    from flows.release import ReleaseConfig, release_flow

    result = release_flow(ReleaseConfig(top_k=top_k, router_tuning_steps=rt_steps,
                                        max_public_increase=max_public_increase,
                                        eval_max_tokens=eval_tokens))
    print_figures(result.record.figures, f"flexo-release version {result.version}")
    if not result.promoted:
        raise GovernanceError(f"gate failed ({'; '.join(result.record.gate.failures())}); "
                              f"version {result.version} stays a candidate, production unchanged")
    out.print(f"flexo-release version {result.version} is production; files in {result.directory}")


def print_figures(figures: dict, title: str, extra: dict[str, dict] | None = None) -> None:
    """Per-domain perplexity, anchor vs release (and any extra columns), with routing shares."""
    table = Table(title=title)
    columns = ["anchor", "release", *(extra or {})]
    for col in ("domain", *columns, "change", "routing (top experts)"):
        table.add_column(col, justify="left" if col in ("domain", "routing (top experts)")
                         else "right")
    for domain, f in figures.items():
        values = [f.anchor, f.release, *((extra or {})[c][domain] for c in extra or {})]
        top = sorted(f.routing.items(), key=lambda kv: -kv[1])[:3]
        table.add_row(domain, *(f"{v:,.2f}" for v in values), f"{f.change:+.1%}",
                      ", ".join(f"{e} {s:.0%}" for e, s in top))
    out.print(table)


@app.command()
@friendly_errors
def withdraw(
    contributor: ContributorOpt,
    actor: Annotated[str, typer.Option("--as", help="Who asks (the contributor or an "
                                       "operator).")],
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "",
    request_only: Annotated[bool, typer.Option(
        help="Only emit flexo.withdrawal.requested for a deployed withdrawal flow.")] = False,
) -> None:
    """Withdraw a contributor's module: revoke its versions and release again without it."""
    checked_contributor(contributor)
    _prefect()
    if request_only:
        from prefect.events import emit_event

        from flows.withdraw import REQUESTED_EVENT

        emit_event(event=REQUESTED_EVENT,
                   resource={"prefect.resource.id": f"flexo.contributor.{contributor}",
                             "flexo.contributor": contributor},
                   payload={"actor": actor, "reason": reason})
        out.print(f"requested withdrawal of {contributor} ({REQUESTED_EVENT} emitted)")
        return
    from flows.withdraw import withdraw_flow

    result = withdraw_flow(contributor, actor=actor, reason=reason)
    out.print(f"withdrew {contributor}: versions {result.revoked_versions} revoked; "
              f"re-release version {result.release.version if result.release else '-'}; production is "
              f"{result.production_version or 'unset'}")


@app.command()
@friendly_errors
def lineage(version: Annotated[int, typer.Option("--release", help="flexo-release version.")],
            ) -> None:
    """The chain behind a release, read from MLflow: anchor, experts, reviews, runs."""
    from flows.lineage import release_lineage

    chain = release_lineage(version)
    out.print(f"[bold]flexo-release v{chain.version}[/bold] aliases "
              f"{', '.join(chain.aliases) or '-'}; gate {chain.gate}; release run "
              f"{chain.release_run_id}; evaluation run {chain.evaluation_run_id}", soft_wrap=True)
    out.print(f"anchor: flexo-anchor v{chain.anchor_version} (fingerprint "
              f"{chain.anchor_fingerprint[:16]}, run {chain.anchor_run_id})", soft_wrap=True)
    for e in chain.experts:  # one line each, never truncated: run ids are for copying
        out.print(f"expert {e.contributor}: {e.registered_model} v{e.version} ({e.status}); data "
                  f"fingerprint {e.data_fingerprint[:16]}; reviewed by {e.reviewed_by} "
                  f"({e.reviewer_kind}) {e.reviewed_at}; contribute run {e.contribute_run_id}; "
                  f"training run {e.training_run_id or '-'}", soft_wrap=True, highlight=False)
    if chain.excluded:
        out.print(f"not included: {', '.join(chain.excluded)}")
