"""Attribution records and credits: what each generation owed each expert, summed per contributor.

A record holds the release, the consumer, token counts and each expert's share, never the prompt
or the output. The store is one SQLite file under FLEXO_HOME; credits are sums over its records,
so anyone holding the file can recompute what a contributor was credited with.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

STORE_FILE = "attribution.sqlite"


class AttributionRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    time: str  # ISO 8601, UTC
    release: str  # the release version (`v3`) or the model directory's name
    consumer: str
    prompt_tokens: int = Field(ge=0)
    generated_tokens: int = Field(ge=1)
    active: list[str]  # experts on for this generation, public first
    routing: dict[str, float]  # expert -> share of routing weight over the generated tokens
    loo: dict[str, float | None] | None = None  # expert -> log-likelihood drop when masked


class Credit(BaseModel):
    contributor: str  # an expert name: `public` for the anchor's own FFN
    generations: int  # generations it was switched on for
    routed_tokens: float  # sum over generations of its routing share x generated tokens
    share: float  # routed_tokens over all generated tokens
    loo_nats: float  # sum of its leave-one-out drops, over generations that measured them
    loo_generations: int


class AttributionStore:
    """Append-only records in SQLite (one transaction per record: a crash loses none that was
    acknowledged and leaves no half record)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path)
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, time TEXT "
                         "NOT NULL, release TEXT NOT NULL, consumer TEXT NOT NULL, body TEXT "
                         "NOT NULL)")
            with conn:  # commits, or rolls back on error
                yield conn
        finally:
            conn.close()

    def append(self, *records: AttributionRecord) -> None:
        """Append `records` in one transaction (a server appends a batch's at once)."""
        with self._connect() as conn:
            conn.executemany("INSERT INTO records (time, release, consumer, body) "
                             "VALUES (?, ?, ?, ?)",
                             [(r.time, r.release, r.consumer, r.model_dump_json())
                              for r in records])

    def records(self, since: str | None = None,
                release: str | None = None) -> list[AttributionRecord]:
        """Records from `since` (an ISO date or time, inclusive) and of `release`, oldest first."""
        if not self.path.exists():
            return []
        query, args = "SELECT body FROM records WHERE 1 = 1", []
        if since:
            query, args = query + " AND time >= ?", [*args, since]
        if release:
            query, args = query + " AND release = ?", [*args, release]
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY id", args).fetchall()
        return [AttributionRecord.model_validate_json(body) for (body,) in rows]


def credits(records: list[AttributionRecord]) -> list[Credit]:
    """Usage per expert over `records`, most routed first."""
    total = sum(r.generated_tokens for r in records)
    names = list(dict.fromkeys(name for r in records for name in r.routing))
    out = []
    for name in names:
        on = [r for r in records if name in r.active]
        measured = [r.loo[name] for r in records if r.loo and r.loo.get(name) is not None]
        routed = sum(r.routing.get(name, 0.0) * r.generated_tokens for r in records)
        out.append(Credit(contributor=name, generations=len(on), routed_tokens=routed,
                          share=routed / total if total else 0.0, loo_nats=sum(measured),
                          loo_generations=len(measured)))
    return sorted(out, key=lambda c: -c.routed_tokens)
