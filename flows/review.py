"""`review_flow`: a reviewer's decision on one module version (DESIGN §4).

    check governance's rules -> record the decision as version tags (status last) ->
    announce an approval (`flexo.expert.approved`, which the release deployment listens for)

Reviewers are declared first, in the roster under FLEXO_HOME.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from components.atomic import atomic_write
from flows import events, ledger
from flows.settings import flexo_home
from flows.tracking import registry, runs
from governance.reviews import (
    ROSTER_FILE,
    Decision,
    Review,
    Reviewer,
    ReviewerKind,
    ReviewRefused,
    Roster,
    check_review,
)


def read_roster() -> Roster:
    path = flexo_home() / ROSTER_FILE
    return Roster.model_validate_json(path.read_text()) if path.is_file() else Roster()


def declare_reviewer(name: str, kind: ReviewerKind = "human", organisation: str = "") -> Reviewer:
    """Add (or update) a reviewer in the roster, written whole."""
    reviewer = Reviewer(name=name, kind=kind, organisation=organisation)
    roster = read_roster().declare(reviewer)
    atomic_write(flexo_home() / ROSTER_FILE, roster.model_dump_json(indent=2) + "\n")
    return reviewer


@task(cache_policy=NO_CACHE)
def check(contributor: str, version: int, reviewer: str, decision: Decision,
          note: str) -> Review:
    """The review as governance judges it: a declared reviewer who is not the contributor,
    deciding on a pending version; a refusal names the rule and the fix."""
    from components.clock import timestamp

    runs.configure()
    try:
        who = read_roster().get(reviewer)
        current = registry.expert_version(contributor, version)
        review = Review(contributor=contributor, version=version, reviewer=who,
                        decision=decision, note=note, at=timestamp())
        check_review(review, current.tags.approval_status)
    except ReviewRefused as e:
        raise ledger.refuse(reviewer, contributor, f"review {decision}", str(e),
                            version=version) from None
    return review


@task(retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def record(review: Review) -> None:
    registry.tag_version(registry.expert_model(review.contributor), review.version,
                         review.tags())
    ledger.record("review", review.reviewer.name, review.contributor, version=review.version,
                  decision=review.decision, reviewer_kind=review.reviewer.kind)
    get_run_logger().info("%s version %d %s by %s (%s)", registry.expert_model(review.contributor),
                          review.version, review.decision, review.reviewer.name,
                          review.reviewer.kind)


@task(cache_policy=NO_CACHE)
def announce(review: Review) -> None:
    if review.decision == "approved":
        events.emit(events.EXPERT_APPROVED, f"flexo.expert.{review.contributor}",
                    {"registered_model": registry.expert_model(review.contributor),
                     "version": review.version, "reviewer": review.reviewer.name,
                     "reviewer_kind": review.reviewer.kind}, contributor=review.contributor)


@flow(name="review")
def review_flow(contributor: str, version: int, reviewer: str, decision: Decision,
                note: str = "") -> Review:
    """Record `reviewer`'s `decision` on version `version` of `flexo-expert-<contributor>`."""
    review = check(contributor, version, reviewer, decision, note)
    record(review)
    announce(review)
    return review


def version_rows() -> list[dict[str, str]]:
    """Every module version with its review state, for `flexo review list`."""
    runs.configure()
    return [{"contributor": contributor, "version": str(v.version),
             "status": v.tags.approval_status, "reviewed_by": v.tags.reviewed_by or "",
             "weights": v.tags.weights_sha256[:12]}
            for contributor in registry.contributors()
            for v in registry.expert_versions(contributor)]
