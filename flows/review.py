"""Reviews in the registry: a decision is a set of version tags (DESIGN §3 `approval_status`)
written under governance's rules; an approval emits `flexo.expert.approved`, which the release
deployment listens for."""

from __future__ import annotations

from mlflow import MlflowClient
from prefect.events import emit_event

from components.errors import GovernanceError
from flows import registry, tracking
from flows.settings import flexo_home
from governance.reviews import (
    Decision,
    Review,
    Reviewer,
    ReviewerKind,
    ReviewRefused,
    Roster,
    check_review,
)

APPROVED_EVENT = "flexo.expert.approved"


def declare_reviewer(name: str, kind: ReviewerKind = "human", organisation: str = "") -> Reviewer:
    reviewer = Reviewer(name=name, kind=kind, organisation=organisation)
    Roster.read(flexo_home()).declare(reviewer).write(flexo_home())
    return reviewer


def record_review(contributor: str, version: int, reviewer: str, decision: Decision,
                  note: str = "") -> Review:
    """Check the rules, then tag the version (status last) and announce an approval."""
    tracking.configure()
    try:
        who = Roster.read(flexo_home()).get(reviewer)
        current = registry.version(registry.expert_model(contributor), version)
        review = Review(contributor=contributor, version=version, reviewer=who,
                        decision=decision, note=note)
        check_review(review, current.tags.get("approval_status", "pending"))
    except ReviewRefused as e:
        raise GovernanceError(str(e)) from None
    client = MlflowClient()
    for key, value in review.tags().items():
        client.set_model_version_tag(current.name, str(version), key, value)
    if decision == "approved":
        emit_event(event=APPROVED_EVENT,
                   resource={"prefect.resource.id": f"flexo.expert.{contributor}",
                             "flexo.contributor": contributor},
                   payload={"registered_model": current.name, "version": version,
                            "reviewer": who.name, "reviewer_kind": who.kind})
    return review


def version_rows() -> list[dict[str, str]]:
    """Every module version with its review state, for `flexo review list`."""
    tracking.configure()
    rows = []
    for contributor in registry.contributors():
        for v in registry.versions(registry.expert_model(contributor)):
            rows.append({"contributor": contributor, "version": v.version,
                         "status": v.tags.get("approval_status", "?"),
                         "reviewed_by": v.tags.get("reviewed_by", ""),
                         "weights": v.tags.get("weights_sha256", "")[:12],
                         "domain": v.tags.get("domain", "")})
    return rows
