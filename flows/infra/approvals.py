"""Approvals recorded in the registry by hand (the MLflow UI, a script) settle as `flexo review`
settles them (issue 17): the events receiver sees each `approval.<reviewer>` tag; once a pending
version holds the policy's number of approvals, by reviewers the policy admits, and passes its
module gates (less recorded waivers), it is marked `approved`, the decision goes on the ledger and
`flexo.expert.approved` starts the release deployment.

The server's registry rules let a user write only `approval.<its own name>` and never on its own
module, so the tag's name is the identity the server authenticated. An approval that `flexo
review` wrote (its record carries `approval.<reviewer>.reviewer_kind`) is settled by that flow
itself, which announces it: the receiver leaves it alone, so an approval is announced once.
"""

from __future__ import annotations

from pydantic import BaseModel

from flows import events, ledger
from flows.policy import policy_in_force
from flows.tracking import registry, runs
from governance.access import AccessRefused, require_reviewer
from governance.reviews import Review, Reviewer, ReviewRefused, check_gates
from governance.tags import ApprovalTags

ACTOR = "flexo-events"


class Settlement(BaseModel):
    contributor: str
    version: int
    approved: bool
    reason: str  # why not, or who approved


def approval_tag(model: str, key: str) -> str | None:
    """The reviewer a webhook's tag records an approval of, when it is the approval's last
    (bare) key on an expert model: `approval.<reviewer>`."""
    if not model.startswith(registry.EXPERT_PREFIX) or not key.startswith(ApprovalTags.PREFIX):
        return None
    party = key.removeprefix(ApprovalTags.PREFIX)
    return party if party and "." not in party else None


def settle(contributor: str, version: int, reviewer: str) -> Settlement | None:
    """Settle `version` after `reviewer`'s approval was recorded by hand; None when there is
    nothing to do (flexo's own review, not pending, approvals still missing)."""
    from components.clock import timestamp

    runs.configure()
    current = registry.expert_version(contributor, version)
    tags, raw = current.tags, registry.version_tags(current.name, version)
    if f"{ApprovalTags.PREFIX}{reviewer}.reviewer_kind" in raw:
        return None  # `flexo review` wrote it and settles it
    policy = policy_in_force()
    if tags.approval_status != "pending" or len(tags.approvals) < policy.approvals_required:
        return None
    review = Review(contributor=contributor, version=version, reviewer=Reviewer(name=reviewer),
                    decision="approved", note="approved in the registry", at=timestamp())
    try:  # reviewers the policy admits; the module gates, less the waivers on record
        for name in tags.approvals:
            require_reviewer(policy, name)
        check_gates(review, policy, tags)
    except (AccessRefused, ReviewRefused) as e:
        ledger.record("refusal", ACTOR, contributor, action="review approved", reason=str(e),
                      version=version)
        return Settlement(contributor=contributor, version=version, approved=False,
                          reason=str(e))
    settled = review.settled(tags.approvals, policy.approvals_required)  # as `flexo review`
    registry.tag_version(current.name, version, settled)
    ledger.record("review", reviewer, contributor, version=version, decision="approved",
                  reviewer_kind=settled.reviewer_kind,
                  approvals=f"{len(tags.approvals)}/{policy.approvals_required}",
                  status="approved", recorded_in="registry")
    events.emit(events.EXPERT_APPROVED, f"flexo.expert.{contributor}",
                {"registered_model": current.name, "version": version, "reviewer": reviewer,
                 "reviewer_kind": settled.reviewer_kind, "approvals": len(tags.approvals)},
                contributor=contributor)
    return Settlement(contributor=contributor, version=version, approved=True,
                      reason=f"approved by {settled.reviewed_by}")
