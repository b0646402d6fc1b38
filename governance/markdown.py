"""The one Markdown-table format of every table flexo writes (README, model card, claims report,
MLflow `evaluation.md`): GitHub-flavoured pipe tables, built by `tabulate`. No torch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tabulate import tabulate


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]],
                   align: Sequence[str] | None = None) -> str:
    """A pipe table; `align` is one of "left"/"right"/"center" per column (default all left).

    Cells are printed as given: callers format their numbers, so tabulate never re-parses them.
    """
    return tabulate([list(r) for r in rows], headers=list(headers), tablefmt="pipe",
                    colalign=None if align is None else tuple(align), disable_numparse=True)
