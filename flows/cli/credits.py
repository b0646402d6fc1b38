"""`flexo credits`: usage per contributor, summed from the attribution records."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from flows.cli.app import app, command, out


@command(app, log=None)
def credits(
    since: Annotated[str | None, typer.Option(help="From this date or time (ISO 8601, UTC), "
                                              "inclusive.")] = None,
    release: Annotated[int | None, typer.Option(help="Only generations from this release "
                                                "version.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Credits as JSON.")] = False,
) -> None:
    """Each contributor's part in the generations on record: routed tokens, share, generations
    it was on for, and leave-one-out nats where measured."""
    from datetime import datetime

    from rich.table import Table

    from components.errors import ConfigError
    from flows.settings import flexo_home
    from governance.attribution import STORE_FILE, AttributionStore
    from governance.attribution import credits as sum_credits

    if since is not None:
        try:
            datetime.fromisoformat(since)
        except ValueError:
            raise ConfigError(f"--since {since!r} is not an ISO 8601 date or time; use e.g. "
                              f"2026-11-30 or 2026-11-30T12:00:00") from None
    records = AttributionStore(flexo_home() / STORE_FILE).records(
        since, None if release is None else f"v{release}")
    rows = sum_credits(records)
    if as_json:
        out.print_json(json.dumps({"generations": len(records),
                                   "credits": [c.model_dump() for c in rows]}))
        return
    table = Table(title=f"credits over {len(records)} generations")
    for col in ("contributor", "generations on", "routed tokens", "share", "loo nats"):
        table.add_column(col, justify="left" if col == "contributor" else "right")
    for c in rows:
        table.add_row(c.contributor, str(c.generations), f"{c.routed_tokens:,.1f}",
                      f"{c.share:.1%}", f"{c.loo_nats:+.2f}" if c.loo_generations else "-")
    out.print(table)
