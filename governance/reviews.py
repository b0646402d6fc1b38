"""Reviews of expert-module versions: who may review, and what a decision must satisfy.

Reviewers are declared before they act (a roster, kept by flows under FLEXO_HOME); a declared demo
reviewer is recorded as such, so no one mistakes the demo's approvals for a real review. Rules:
the reviewer is declared, is not the contributor, decides only on a version that is still
pending, and approves it once. A version turns `approved` when the policy's number of distinct
reviewers have approved it (until then it stays `pending`, its approvals recorded); one rejection
rejects it. An approval applies the policy's module gates to what the module published; a gate
may be waived with a note, which stays on the version and the ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from governance.contributors import ContributorId
from governance.policy import WAIVABLE, Policy, gate_failures

if TYPE_CHECKING:
    from governance.tags import ApprovalTags, ExpertVersionTags, ReviewTags, WaiverTags

ReviewerKind = Literal["human", "demo"]
Decision = Literal["approved", "rejected"]
ApprovalStatus = Literal["pending", "approved", "rejected", "withdrawn"]
ROSTER_FILE = "reviewers.json"


class ReviewRefused(ValueError):
    """A review that the rules do not allow; the message names the rule and the fix."""


class Reviewer(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: ContributorId  # same alphabet as contributor ids
    kind: ReviewerKind = "human"
    organisation: str = ""


class Roster(BaseModel):
    """Declared reviewers (`reviewers.json`)."""

    reviewers: list[Reviewer] = []

    def declare(self, reviewer: Reviewer) -> Roster:
        others = [r for r in self.reviewers if r.name != reviewer.name]
        return Roster(reviewers=[*others, reviewer])

    def get(self, name: str) -> Reviewer:
        for r in self.reviewers:
            if r.name == name:
                return r
        raise ReviewRefused(f"reviewer '{name}' is not declared; declare them first with "
                            f"`flexo review declare --as {name}`")


class Review(BaseModel):
    """One decision on one version, as recorded in the registry's version tags."""

    contributor: ContributorId
    version: int = Field(ge=1)
    reviewer: Reviewer
    decision: Decision
    note: str = Field("", max_length=500)
    at: str  # when, by the recording side's clock
    waivers: dict[str, str] = {}  # gate rule -> why it is waived (approvals only)

    def approval(self) -> ApprovalTags:
        from governance.tags import ApprovalTags

        return ApprovalTags(reviewer=self.reviewer.name, reviewer_kind=self.reviewer.kind,
                            note=self.note, at=self.at)

    def waiver_tags(self) -> list[WaiverTags]:
        from governance.tags import WaiverTags

        return [WaiverTags(rule=rule, reviewer=self.reviewer.name, at=self.at, note=note)
                for rule, note in sorted(self.waivers.items())]

    def settled(self, approvals: dict[str, ApprovalTags], required: int) -> ReviewTags | None:
        """The status tags this review settles, given every approval the version now holds
        (this one included): `rejected` at once; `approved` once `required` reviewers have
        approved; None while the version still gathers approvals."""
        from governance.tags import ReviewTags

        if self.decision == "rejected":
            return ReviewTags(reviewed_by=self.reviewer.name, reviewer_kind=self.reviewer.kind,
                              reviewed_at=self.at, review_note=self.note,
                              approval_status="rejected")
        if len(approvals) < required:
            return None
        ordered = sorted(approvals.values(), key=lambda a: (a.at, a.reviewer))
        kind = "demo" if any(a.reviewer_kind == "demo" for a in ordered) else "human"
        return ReviewTags(reviewed_by=",".join(a.reviewer for a in ordered), reviewer_kind=kind,
                          reviewed_at=self.at, review_note=self.note, approval_status="approved")


def check_review(review: Review, current: ExpertVersionTags) -> None:
    """Raise ReviewRefused unless this review may be recorded on a version whose tags are
    `current`."""
    if review.reviewer.name == review.contributor:
        raise ReviewRefused(f"'{review.reviewer.name}' contributed this module and cannot review "
                            f"it (four eyes); ask another declared reviewer")
    status = current.approval_status
    if status != "pending":
        raise ReviewRefused(f"version {review.version} of {review.contributor} is {status}, not "
                            f"pending; only pending versions are reviewed")
    if review.decision == "approved" and review.reviewer.name in current.approvals:
        raise ReviewRefused(f"'{review.reviewer.name}' already approved version {review.version} "
                            f"of {review.contributor}; a second approval by the same reviewer "
                            f"does not count: ask another declared reviewer")
    if review.waivers and review.decision != "approved":
        raise ReviewRefused("a gate is waived only when approving; reject without --waive")
    for rule, note in review.waivers.items():
        if rule not in WAIVABLE:
            raise ReviewRefused(f"'{rule}' is not a gate that can be waived; waive one of "
                                f"{', '.join(WAIVABLE)} (a licence is never waived)")
        if not note.strip():
            raise ReviewRefused(f"waiving {rule} needs a note saying why; add --note WHY")


def check_gates(review: Review, policy: Policy, current: ExpertVersionTags) -> None:
    """An approval passes the policy's module gates on the figures the module published, less
    the gates waived (before, on this version, or by this review); refused naming every failing
    rule with its figure and threshold."""
    waived = frozenset(current.waivers) | frozenset(review.waivers)
    failures = gate_failures(policy, current.figures(), waived)
    if failures:
        raise ReviewRefused(f"version {review.version} of {review.contributor} fails the "
                            f"policy: {'; '.join(failures)}; a reviewer may waive a gate with "
                            f"--waive RULE --note WHY (never a licence)")
