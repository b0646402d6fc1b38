"""`flexo ledger show|verify`: the governance ledger, read and checked."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from flows.cli.app import command, out, sub_app

group = sub_app("ledger", "The governance ledger: every governance event, hash-chained and "
                          "signed.")


@command(group, log=None)
def show(as_json: Annotated[bool, typer.Option("--json", help="Entries as a JSON list.")] = False,
         ) -> None:
    """Every entry, oldest first (verified first: a tampered ledger is not shown as true)."""
    from rich.table import Table

    from flows.ledger import home_ledger, verify

    verify()
    entries = home_ledger().entries()
    if as_json:
        out.print_json(json.dumps([e.model_dump() for e in entries]))
        return
    table = Table("seq", "time", "event", "actor", "subject", "details")
    for e in entries:
        table.add_row(str(e.seq), e.time[:19], e.event, e.actor, e.subject,
                      ", ".join(f"{k}={v}" for k, v in e.details.items()))
    out.print(table)


@command(group, log=None)
def verify() -> None:
    """Check the hash chain, each checkpoint's Merkle root and its signature by the operator
    key; exit 7 naming the first bad entry."""
    from flows.ledger import verify as check

    result = check()
    out.print(f"ledger verified: {result.entries} entries, Merkle root {result.root[:16]}, "
              f"signed by operator key {result.public_key[:16] or '(none yet)'}", highlight=False,
              soft_wrap=True)
