"""flexo's Prefect custom events (DESIGN §3), named and emitted in one place.

prefect.yaml's triggers match these names and resources: `release` runs on EXPERT_APPROVED,
`withdraw` on WITHDRAWAL_REQUESTED (its parameters templated from the payload), `promote` on
RELEASE_ACCEPTED (the release version from the payload).
"""

from __future__ import annotations

from typing import Any

EXPERT_PUBLISHED = "flexo.expert.published"
EXPERT_APPROVED = "flexo.expert.approved"
WITHDRAWAL_REQUESTED = "flexo.withdrawal.requested"
RELEASE_PUBLISHED = "flexo.release.published"
RELEASE_ACCEPTED = "flexo.release.accepted"
RELEASE_REJECTED = "flexo.release.rejected"
RELEASE_PROMOTED = "flexo.release.promoted"
RELEASE_REVERTED = "flexo.release.reverted"  # `production` moved by hand, put back


def emit(event: str, resource_id: str, payload: dict[str, Any],
         contributor: str | None = None) -> None:
    """Emit `event` about `resource_id` (e.g. `flexo.expert.<id>`); payloads hold ids, versions,
    digests and decisions, never contributor text."""
    from prefect.events import emit_event

    resource = {"prefect.resource.id": resource_id}
    if contributor:
        resource["flexo.contributor"] = contributor
    emit_event(event=event, resource=resource, payload=payload)
