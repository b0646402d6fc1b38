"""`flexo review declare|list|approve|reject`: reviewers' decisions on module versions."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from flows.cli.app import FLOW_LIBRARIES, checked_contributor, command, out, sub_app
from flows.cli.console import StoryDisplay

review_app = sub_app("review", "Review expert-module versions.")

AsOpt = Annotated[str, typer.Option("--as", help="Your declared reviewer name.")]
ContributorOpt = Annotated[str, typer.Option(help="Contributor id.")]
VersionOpt = Annotated[int, typer.Option(help="Version of flexo-expert-<contributor>.")]
NoteOpt = Annotated[str, typer.Option(help="A short note kept with the decision.")]


@command(review_app, "declare", log=None)
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


@command(review_app, "list", log=("mlflow",))
def review_list() -> None:
    """Every module version and its review state."""
    from flows.review import version_rows

    rows = version_rows()
    columns = ("contributor", "version", "status", "reviewed_by", "weights")
    table = Table(title="Expert module versions")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    out.print(table if rows else "no module versions registered yet")


def _decide(contributor: str, version: int, reviewer: str, decision: str, note: str) -> None:
    from flows.review import review_flow

    with StoryDisplay(out):
        review = review_flow(checked_contributor(contributor), version, reviewer, decision,
                             note)
    out.print(f"flexo-expert-{contributor} version {version} {decision} by {review.reviewer.name} "
              f"({review.reviewer.kind})")


@command(review_app, "approve", log=FLOW_LIBRARIES)
def review_approve(contributor: ContributorOpt, version: VersionOpt, reviewer: AsOpt,
                   note: NoteOpt = "") -> None:
    """Approve a pending version (emits flexo.expert.approved)."""
    _decide(contributor, version, reviewer, "approved", note)


@command(review_app, "reject", log=FLOW_LIBRARIES)
def review_reject(contributor: ContributorOpt, version: VersionOpt, reviewer: AsOpt,
                  note: NoteOpt = "") -> None:
    """Reject a pending version."""
    _decide(contributor, version, reviewer, "rejected", note)
