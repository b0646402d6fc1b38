"""The one clock every record reads: UTC, to the second, ISO 8601."""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timestamp() -> str:
    """`2026-11-29T19:50:30+00:00`: what records carry."""
    return utc_now().isoformat(timespec="seconds")


def stamp() -> str:
    """`20261129T195030123456Z`: a sortable, filesystem-safe name for a new directory."""
    return f"{utc_now():%Y%m%dT%H%M%S%fZ}"
