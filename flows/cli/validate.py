"""`flexo validate`: data checks and a PII report for a contributor's directory, before training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from components.errors import DataError
from flows.cli.app import app, command, out
from flows.cli.options import PiiOpt, PiiPolicy


@command(app, log=("great_expectations",))
def validate(
    data: Annotated[Path, typer.Option(help="Directory of .txt/.md/.jsonl files.")],
    report_dir: Annotated[Path | None, typer.Option("--report", help="New directory for the "
                          "reports (default: $FLEXO_HOME/reports/validate-<time>).")] = None,
    pii: PiiOpt = PiiPolicy.redact,
) -> None:
    """Run the Great Expectations suite and PII screening; write reports (statistics only)."""
    from components.atomic import atomic_output_dir, check_output_dir
    from components.clock import stamp
    from flows.settings import flexo_home

    target = check_output_dir(report_dir or flexo_home() / "reports" / f"validate-{stamp()}")
    from components.pii import screen
    from components.user_data import load_directory
    from components.validation import validate_directory

    report, gx_result = validate_directory(data)
    pii_report = None
    if report.success:
        _, pii_report = screen(load_directory(data).texts(), pii.value)
    with atomic_output_dir(target) as tmp:
        summary = {"validation": report.model_dump(),
                   "pii": pii_report.model_dump() if pii_report else None}
        (tmp / "validation.json").write_text(json.dumps(summary, indent=2) + "\n")
        (tmp / "gx_result.json").write_text(json.dumps(gx_result, indent=2, default=str) + "\n")
    table = Table(title=f"Validation of {data}")
    for col in ("expectation", "result", "observed (value or % unexpected)"):
        table.add_column(col)
    for o in report.expectations:
        table.add_row(o.name, "[green]pass[/green]" if o.success else "[red]FAIL[/red]",
                      f"{o.observed:.4g}" if isinstance(o.observed, float) else str(o.observed))
    out.print(table)
    if pii_report:
        found = ", ".join(f"{k} {v}" for k, v in pii_report.counts.items() if v) or "none"
        out.print(f"PII ({pii_report.policy}): {found} in {pii_report.documents_with_pii} of "
                  f"{pii_report.documents} documents")
    out.print(f"reports written to {target}")
    if not report.success:
        raise DataError(f"data checks failed: {', '.join(report.failed)}; fix the data in {data}")
    if pii_report and pii is PiiPolicy.fail and pii_report.found:
        raise DataError(f"PII found ({pii_report.found} values) and the policy is 'fail'; remove "
                        f"it or use --pii redact")
