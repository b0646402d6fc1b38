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
from governance.policy import gate_failures
from governance.tags import ApprovalTags, ReviewTags

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
    subject = f"{current.name} v{version}"
    try:
        for name in tags.approvals:
            require_reviewer(policy, name)
    except AccessRefused as e:
        ledger.record("refusal", ACTOR, contributor, action="review approved", reason=str(e),
                      version=version)
        return Settlement(contributor=contributor, version=version, approved=False,
                          reason=str(e))
    failures = gate_failures(policy, tags.figures(), frozenset(tags.waivers))
    if failures:
        reason = f"{subject} fails the policy: {'; '.join(failures)}"
        ledger.record("refusal", ACTOR, contributor, action="review approved", reason=reason,
                      version=version)
        return Settlement(contributor=contributor, version=version, approved=False,
                          reason=reason)
    ordered = sorted(tags.approvals.values(), key=lambda a: (a.at, a.reviewer))
    reviewers = ",".join(a.reviewer for a in ordered)
    registry.tag_version(current.name, version, ReviewTags(
        reviewed_by=reviewers, reviewer_kind="human", reviewed_at=timestamp(),
        review_note="approved in the registry", approval_status="approved"))
    ledger.record("review", reviewer, contributor, version=version, decision="approved",
                  reviewer_kind="human", approvals=f"{len(ordered)}/{policy.approvals_required}",
                  status="approved", recorded_in="registry")
    events.emit(events.EXPERT_APPROVED, f"flexo.expert.{contributor}",
                {"registered_model": current.name, "version": version, "reviewer": reviewer,
                 "reviewer_kind": "human", "approvals": len(ordered)}, contributor=contributor)
    return Settlement(contributor=contributor, version=version, approved=True,
                      reason=f"approved by {reviewers}")
