"""`flexo withdraw`: a contributor takes their module back (the withdraw flow, or only its event)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import FLOW_LIBRARIES, app, checked_contributor, command, out
from flows.cli.console import StoryDisplay, current_log
from flows.cli.options import as_option
from flows.cli.render import log_hint


@command(app, log=FLOW_LIBRARIES)
def withdraw(
    contributor: Annotated[str, typer.Option(help="Contributor id.")],
    actor: Annotated[str | None, as_option("Who asks (the contributor or an operator).")] = None,
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "",
    request_only: Annotated[bool, typer.Option(
        help="Only emit flexo.withdrawal.requested for a deployed withdrawal flow.")] = False,
    rerelease: Annotated[bool, typer.Option(
        help="Build the release without it now (else: at the next `flexo release`).")] = True,
    dvc_repo: Annotated[Path | None, typer.Option(
        help="Also take it out of this DVC project (params, stages, outputs, cache).")] = None,
) -> None:
    """Withdraw a contributor's module: masked at once everywhere, its versions revoked and its
    files deleted, and a release built without it (production once its contributors accept)."""
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
        result = withdraw_flow(contributor, actor=actor, reason=reason, rerelease=rerelease,
                               dvc_repo=dvc_repo)
    if result.already_withdrawn:
        out.print(f"{contributor} was withdrawn already: nothing changed")
        return
    production = (f"production is v{result.production_version}, served with {contributor} "
                  f"masked until a release without it is promoted"
                  if result.production_version else "no release is in production")
    out.print(f"withdrew {contributor}: on the deny-list; versions {result.revoked_versions} "
              f"revoked; {len(result.purged)} locations purged; re-release "
              f"{'v' + str(result.release.version) if result.release else 'not built'}; "
              f"{production}")
    log_hint(current_log())
