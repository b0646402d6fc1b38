"""Progress of long work, two ways: a tqdm bar on the terminal, and INFO records (with the step
and total in `record.flexo_progress`) that a log file keeps and a live display can draw.

`FLEXO_PROGRESS_BARS=0` turns the bars off (the CLI sets it while its own live display owns the
terminal), the way `HF_HUB_DISABLE_PROGRESS_BARS` does for the hub; the records always flow.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

BARS_ENV = "FLEXO_PROGRESS_BARS"
T = TypeVar("T")


def bars_enabled() -> bool:
    return os.environ.get(BARS_ENV, "1") != "0"


class Progress:
    """`for step in Progress(range(n), desc, log, total=n): ...; progress.note(loss=...)`."""

    def __init__(self, iterable: Iterable[T], desc: str, log: logging.Logger, total: int,
                 unit: str = "step", initial: int = 0, enabled: bool = True, every: int = 20):
        self.desc, self.log, self.total, self.unit = desc, log, total, unit
        self.bar = tqdm(iterable, desc=desc, unit=unit, total=total, initial=initial,
                        mininterval=1.0, disable=not (enabled and bars_enabled()))
        self.stride = max(1, total // every)  # about `every` records per run
        self.done = initial
        self.notes: dict[str, str] = {}

    def __iter__(self) -> Iterator[T]:
        for item in self.bar:
            yield item
            self.done += 1
            if self.done % self.stride == 0 or self.done == self.total:
                detail = ", ".join(f"{k} {v}" for k, v in self.notes.items())
                self.log.info("%s: %s %d/%d%s", self.desc, self.unit, self.done, self.total,
                              f" ({detail})" if detail else "",
                              extra={"flexo_progress": (self.done, self.total)})

    def note(self, **values: str) -> None:
        """Figures shown beside the bar and in the next record (e.g. loss, tokens/s)."""
        self.notes = values
        self.bar.set_postfix(values, refresh=False)
