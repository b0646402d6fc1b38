"""`flexo review declare|list|approve|reject`: reviewers' decisions on module versions."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from flows.cli.app import FLOW_LIBRARIES, checked_contributor, command, out, sub_app
from flows.cli.console import StoryDisplay
from flows.cli.options import as_option
from governance.policy import WAIVABLE

review_app = sub_app("review", "Review expert-module versions.")

AsOpt = Annotated[str | None, as_option("Your declared reviewer name.")]
ContributorOpt = Annotated[str, typer.Option(help="Contributor id.")]
VersionOpt = Annotated[int, typer.Option(help="Version of flexo-expert-<contributor>.")]
Gate = StrEnum("Gate", {rule: rule for rule in WAIVABLE})  # the module gates a reviewer waives
NoteOpt = Annotated[str, typer.Option(help="A short note kept with the decision (and why a "
                                      "gate is waived).")]


@command(review_app, "declare", log=None)
def review_declare(
    name: AsOpt = None,
    demo: Annotated[bool, typer.Option(help="A demo reviewer: recorded as such on every "
                                       "decision.")] = False,
    organisation: Annotated[str, typer.Option(help="Who the reviewer works for.")] = "",
) -> None:
    """Declare a reviewer (reviews by undeclared names are refused)."""
    from flows.review import declare_reviewer

    reviewer = declare_reviewer(checked_contributor(name), "demo" if demo else "human",
                                organisation)
    out.print(f"declared reviewer {reviewer.name} ({reviewer.kind})")


@command(review_app, "list", log=("mlflow",))
def review_list() -> None:
    """Every module version and its review state."""
    from flows.review import version_rows

    rows = version_rows()
    columns = ("contributor", "version", "status", "approvals", "reviewed_by", "waived",
               "weights")
    table = Table(title="Expert module versions")
    for col in columns:  # what a reviewer looks for is never cut short
        table.add_column(col, no_wrap=col in ("contributor", "status", "approvals"))
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    out.print(table if rows else "no module versions registered yet")


def _decide(contributor: str, version: int, reviewer: str, decision: str, note: str,
            waive: list[Gate] | None = None) -> None:
    from flows.review import review_flow

    with StoryDisplay(out):
        outcome = review_flow(checked_contributor(contributor), version, reviewer, decision,
                              note, {rule.value: note for rule in waive or []})
    who = outcome.review.reviewer
    waived = f"; waived {', '.join(sorted(outcome.review.waivers))}" if waive else ""
    state = (f"pending: {outcome.approvals} of {outcome.required} approvals"
             if outcome.status == "pending" else outcome.status)
    out.print(f"flexo-expert-{contributor} version {version} {decision} by {who.name} "
              f"({who.kind}){waived}; now {state}")


@command(review_app, "approve", log=FLOW_LIBRARIES)
def review_approve(
    contributor: ContributorOpt, version: VersionOpt, reviewer: AsOpt = None, note: NoteOpt = "",
    waive: Annotated[list[Gate] | None, typer.Option(
        help="Waive this module gate of the policy (repeat), recorded with --note as the "
             "reason; a licence is never waived.")] = None,
) -> None:
    """Approve a pending version; it is approved (and flexo.expert.approved emitted) once the
    policy's number of reviewers have approved it."""
    _decide(contributor, version, reviewer, "approved", note, waive)


@command(review_app, "reject", log=FLOW_LIBRARIES)
def review_reject(contributor: ContributorOpt, version: VersionOpt, reviewer: AsOpt = None,
                  note: NoteOpt = "") -> None:
    """Reject a pending version (one rejection rejects it)."""
    _decide(contributor, version, reviewer, "rejected", note)
