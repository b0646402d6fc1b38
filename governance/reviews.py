"""Reviews of expert-module versions: who may review, and what a decision must satisfy.

Reviewers are declared before they act (a roster, kept by flows under FLEXO_HOME); a declared demo
reviewer is recorded as such, so no one mistakes the demo's approvals for a real review. Rules:
the reviewer is declared, is not the contributor, and decides only on a version that is still
pending.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from governance.contributors import ContributorId

if TYPE_CHECKING:
    from governance.tags import ReviewTags

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

    def tags(self) -> ReviewTags:
        from governance.tags import ReviewTags

        return ReviewTags(reviewed_by=self.reviewer.name, reviewer_kind=self.reviewer.kind,
                          reviewed_at=self.at, review_note=self.note,
                          approval_status=self.decision)


def check_review(review: Review, status: str) -> None:
    """Raise ReviewRefused unless this review may be recorded on a version in `status`."""
    if review.reviewer.name == review.contributor:
        raise ReviewRefused(f"'{review.reviewer.name}' contributed this module and cannot review "
                            f"it (four eyes); ask another declared reviewer")
    if status != "pending":
        raise ReviewRefused(f"version {review.version} of {review.contributor} is {status}, not "
                            f"pending; only pending versions are reviewed")
