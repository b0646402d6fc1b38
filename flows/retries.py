"""Task retry policies: registry and store calls retry a transient fault, never a refusal.

A `FlexoError` (a governance refusal, a missing version, a bad checkpoint) says the same thing on
every attempt; retrying it only repeats its ledger entry and delays the answer.
"""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

from components.errors import FlexoError

_DELAYS = [2, 5, 15]


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's `retry_condition_fn`: retry unless the failure is one of flexo's own errors."""
    return not isinstance(state.data, FlexoError)


def retried(attempts: int = 3) -> dict[str, Any]:
    """`@task(**retried(n))`: up to n retries of a transient fault, never of a FlexoError."""
    return {"retries": attempts, "retry_delay_seconds": _DELAYS[:attempts],
            "retry_condition_fn": transient, "cache_policy": NO_CACHE}
