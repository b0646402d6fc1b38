"""How figures look on the console: rich tables shared by several commands."""

from __future__ import annotations

import json
import sys

from rich.table import Table

from flows.cli.app import out


def perplexity_table(results: list, title: str, as_json: bool = False) -> None:
    """Perplexity per domain (`flexo evaluate`), as a table or as JSON for machines."""
    if as_json:
        rows = {r.domain.split(":")[0]: {"perplexity": r.perplexity, "nll": r.nll,
                                         "tokens": r.tokens} for r in results}
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title=title)
    for col in ("domain", "perplexity", "tokens"):
        table.add_column(col, justify="left" if col == "domain" else "right")
    for r in results:
        table.add_row(r.domain.split(":")[0], f"{r.perplexity:,.2f}", f"{r.tokens:,}")
    out.print(table)


def release_figures(figures: dict, title: str, extra: dict[str, dict] | None = None) -> None:
    """Per-domain perplexity, anchor vs release (and any extra columns), with routing shares."""
    table = Table(title=title)
    columns = ["anchor", "release", *(extra or {})]
    for col in ("domain", *columns, "change"):  # figures never shrink; routing wraps instead
        table.add_column(col, justify="left" if col == "domain" else "right", no_wrap=True,
                         min_width=len(col))
    table.add_column("routing (top experts)", overflow="fold")
    for domain, f in figures.items():
        values = [f.anchor, f.release, *((extra or {})[c][domain] for c in extra or {})]
        top = sorted(f.routing.items(), key=lambda kv: -kv[1])[:3]
        table.add_row(domain, *(f"{v:,.2f}" for v in values), f"{f.change:+.1%}",
                      ", ".join(f"{e} {s:.0%}" for e, s in top))
    out.print(table)


def log_hint(path) -> None:
    out.print(f"[dim]full log: {path}[/dim]", highlight=False, soft_wrap=True)


def attribution_table(found) -> Table:
    """One generation's attribution (`components.attribution.Attribution`): each expert's routing
    share, and its leave-one-out drop when measured."""
    table = Table(title=f"attribution over {found.generated_tokens} generated tokens")
    table.add_column("expert")
    table.add_column("routing share", justify="right")
    if found.loo is not None:
        table.add_column("log-likelihood drop when masked (nats)", justify="right")
    for name, share in sorted(found.routing.items(), key=lambda kv: -kv[1]):
        loo = [] if found.loo is None else [
            "-" if found.loo[name] is None else f"{found.loo[name]:+.3f}"]
        table.add_row(name, f"{share:.1%}", *loo)
    return table
