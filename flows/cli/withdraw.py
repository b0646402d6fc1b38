"""`flexo withdraw`: a contributor takes their module back (the withdraw flow, or only its event)."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.app import FLOW_LIBRARIES, app, checked_contributor, command, out
from flows.cli.console import StoryDisplay, current_log
from flows.cli.render import log_hint


@command(app, log=FLOW_LIBRARIES)
def withdraw(
    contributor: Annotated[str, typer.Option(help="Contributor id.")],
    actor: Annotated[str, typer.Option("--as", help="Who asks (the contributor or an "
                                       "operator).")],
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "",
    request_only: Annotated[bool, typer.Option(
        help="Only emit flexo.withdrawal.requested for a deployed withdrawal flow.")] = False,
) -> None:
    """Withdraw a contributor's module: revoke its versions and release again without it."""
    from flows import events

    checked_contributor(contributor)
    if request_only:
        events.emit(events.WITHDRAWAL_REQUESTED, f"flexo.contributor.{contributor}",
                    {"actor": actor, "reason": reason}, contributor=contributor)
        out.print(f"requested withdrawal of {contributor} ({events.WITHDRAWAL_REQUESTED} "
                  f"emitted)")
        return
    from flows.withdraw import withdraw_flow

    with StoryDisplay(out):
        result = withdraw_flow(contributor, actor=actor, reason=reason)
    out.print(f"withdrew {contributor}: versions {result.revoked_versions} revoked; "
              f"re-release version {result.release.version if result.release else '-'}; "
              f"production is {result.production_version or 'unset'}")
    log_hint(current_log())
