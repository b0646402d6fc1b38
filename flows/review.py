"""`review_flow`: a reviewer's decision on one module version (DESIGN §4).

    check governance's rules (roles, four eyes, pending, once per reviewer, the policy's module
    gates less recorded waivers) -> record the approval or rejection as version tags (status
    last, and only once it is settled) -> announce an approval (`flexo.expert.approved`, which
    the release deployment listens for) when the version has the approvals the policy requires

Reviewers are declared first, in the roster under FLEXO_HOME.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from components.atomic import atomic_write
from flows import events, ledger
from flows.policy import enforce, policy_in_force
from flows.retries import retried
from flows.settings import flexo_home
from flows.tracking import registry, runs
from governance.access import AccessRefused, require_reviewer
from governance.policy import Policy
from governance.reviews import (
    ROSTER_FILE,
    ApprovalStatus,
    Decision,
    Review,
    Reviewer,
    ReviewerKind,
    ReviewRefused,
    Roster,
    check_gates,
    check_review,
)


class ReviewOutcome(BaseModel):
    review: Review
    status: ApprovalStatus  # the version's status after this review
    approvals: int  # approvals the version holds now
    required: int  # approvals the policy requires


def read_roster() -> Roster:
    path = flexo_home() / ROSTER_FILE
    return Roster.model_validate_json(path.read_text()) if path.is_file() else Roster()


def declare_reviewer(name: str, kind: ReviewerKind = "human", organisation: str = "") -> Reviewer:
    """Add (or update) a reviewer in the roster, written whole; when the policy lists
    reviewers, only those."""
    enforce(name, "reviewers", "review declare", lambda policy: require_reviewer(policy, name))
    reviewer = Reviewer(name=name, kind=kind, organisation=organisation)
    roster = read_roster().declare(reviewer)
    atomic_write(flexo_home() / ROSTER_FILE, roster.model_dump_json(indent=2) + "\n")
    return reviewer


@task(cache_policy=NO_CACHE)
def check(contributor: str, version: int, reviewer: str, decision: Decision, note: str,
          waivers: dict[str, str], policy: Policy) -> Review:
    """The review as governance judges it: a declared reviewer the policy admits, who is not
    the contributor, deciding once on a pending version; an approval passes the module gates
    (less waivers). A refusal names the rule and the fix."""
    from components.clock import timestamp

    runs.configure()
    try:
        require_reviewer(policy, reviewer)
        who = read_roster().get(reviewer)
        current = registry.expert_version(contributor, version)
        review = Review(contributor=contributor, version=version, reviewer=who,
                        decision=decision, note=note, at=timestamp(), waivers=waivers)
        check_review(review, current.tags)
        if decision == "approved":
            check_gates(review, policy, current.tags)
    except (ReviewRefused, AccessRefused) as e:
        raise ledger.refuse(reviewer, contributor, f"review {decision}", str(e),
                            version=version) from None
    return review


@task(**retried(3))
def record(review: Review, required: int) -> ReviewOutcome:
    """An approval's and its waivers' tags, then (read back, so approvals recorded meanwhile
    count) the settled status if there is one; the decision on the ledger."""
    name = registry.expert_model(review.contributor)
    if review.decision == "approved":
        for tags in (review.approval(), *review.waiver_tags()):
            registry.tag_version(name, review.version, tags)
    approvals = registry.expert_version(review.contributor, review.version).tags.approvals
    settled = review.settled(approvals, required)
    if settled is not None:
        registry.tag_version(name, review.version, settled)
    outcome = ReviewOutcome(review=review, status=settled.approval_status if settled else
                            "pending", approvals=len(approvals), required=required)
    ledger.record("review", review.reviewer.name, review.contributor, version=review.version,
                  decision=review.decision, reviewer_kind=review.reviewer.kind,
                  approvals=f"{outcome.approvals}/{required}", status=outcome.status,
                  **{f"waiver.{rule}": why for rule, why in sorted(review.waivers.items())})
    get_run_logger().info("%s version %d %s by %s (%s): %s, %d/%d approvals", name,
                          review.version, review.decision, review.reviewer.name,
                          review.reviewer.kind, outcome.status, outcome.approvals, required)
    return outcome


@task(cache_policy=NO_CACHE)
def announce(outcome: ReviewOutcome) -> None:
    """`flexo.expert.approved` once the version is approved, never for an approval that leaves
    it pending."""
    review = outcome.review
    if outcome.status == "approved":
        events.emit(events.EXPERT_APPROVED, f"flexo.expert.{review.contributor}",
                    {"registered_model": registry.expert_model(review.contributor),
                     "version": review.version, "reviewer": review.reviewer.name,
                     "reviewer_kind": review.reviewer.kind, "approvals": outcome.approvals},
                    contributor=review.contributor)


@flow(name="review")
def review_flow(contributor: str, version: int, reviewer: str, decision: Decision,
                note: str = "", waivers: dict[str, str] | None = None) -> ReviewOutcome:
    """Record `reviewer`'s `decision` on version `version` of `flexo-expert-<contributor>`;
    `waivers`: gate rule -> why, recorded with an approval."""
    policy = policy_in_force()
    review = check(contributor, version, reviewer, decision, note, waivers or {}, policy)
    outcome = record(review, policy.approvals_required)
    announce(outcome)
    return outcome


def version_rows() -> list[dict[str, str]]:
    """Every module version with its review state, for `flexo review list`."""
    runs.configure()
    required = policy_in_force().approvals_required
    return [{"contributor": contributor, "version": str(v.version),
             "status": v.tags.approval_status,
             "approvals": f"{len(v.tags.approvals)}/{required}",
             "reviewed_by": v.tags.reviewed_by or ",".join(v.tags.approvals),
             "waived": ",".join(v.tags.waivers), "weights": v.tags.weights_sha256[:12]}
            for contributor in registry.contributors()
            for v in registry.expert_versions(contributor)]
