"""The registry's version tags as records (DESIGN §3): written and parsed here, nowhere else.

MLflow tags are flat strings. Each record below is what one kind of registry version carries (or
what one decision adds to it); `to_tags()` gives the strings to write, `from_tags()` reads them
back, so a list such as a release's experts (`code-commons:1,med-notes:2`) has one spelling.
Readers ignore tags they do not know (a UI user may add some); absent optional tags are None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from governance.contributors import ContributorId
from governance.reviews import ApprovalStatus, ReviewerKind

SHA256 = r"^[0-9a-f]{64}$"


def _split_pairs(value: object) -> object:
    if isinstance(value, str):
        return dict(item.split(":", 1) for item in value.split(",") if item)
    return value


def _split_list(value: object) -> object:
    return [item for item in value.split(",") if item] if isinstance(value, str) else value


# `contributor:version,...` in the registry; {contributor: version} in code.
ExpertVersions = Annotated[
    dict[ContributorId, int], BeforeValidator(_split_pairs),
    PlainSerializer(lambda d: ",".join(f"{c}:{v}" for c, v in d.items()), return_type=str)]
# `a,b` in the registry; [a, b] in code.
CommaList = Annotated[list[str], BeforeValidator(_split_list),
                      PlainSerializer(lambda items: ",".join(items), return_type=str)]


class TagRecord(BaseModel):
    """A set of version tags. Field order is write order: a status field goes last, so a reader
    never sees a decision's status before the rest of its record."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_tags(self) -> dict[str, str]:
        dumped = self.model_dump(mode="json", exclude_none=True)
        return {key: str(value) for key, value in dumped.items()}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Self:
        return cls.model_validate({k: v for k, v in tags.items() if k in cls.model_fields})


class AnchorTags(TagRecord):
    """A `flexo-anchor` version."""

    anchor_fingerprint: str = Field(pattern=SHA256)
    source: str
    preset: str = ""
    parameters: int
    code_version: str


class ExpertTags(TagRecord):
    """A `flexo-expert-<id>` version as published (pending review)."""

    contributor: ContributorId
    anchor_fingerprint: str = Field(pattern=SHA256)
    weights_sha256: str = Field(pattern=SHA256)
    data_fingerprint: str = Field(pattern=SHA256)
    code_version: str
    licence: str = ""  # the module's licence, as its manifest declares it
    approval_status: ApprovalStatus = "pending"


class ReviewTags(TagRecord):
    """What a review adds to an expert version."""

    reviewed_by: str
    reviewer_kind: ReviewerKind
    reviewed_at: str
    review_note: str = ""
    approval_status: Literal["approved", "rejected"]


class WithdrawalTags(TagRecord):
    """What a withdrawal adds to every version of the contributor's model."""

    withdrawn_by: str
    withdrawn_at: str
    withdrawal_reason: str = ""
    approval_status: Literal["withdrawn"] = "withdrawn"


class ExpertVersionTags(TagRecord):
    """An expert version as read back: its publication plus whatever decisions it carries."""

    contributor: ContributorId | None = None
    anchor_fingerprint: str = ""
    weights_sha256: str = ""
    data_fingerprint: str = ""
    code_version: str = ""
    licence: str = ""
    approval_status: ApprovalStatus = "pending"
    reviewed_by: str | None = None
    reviewer_kind: str | None = None
    reviewed_at: str | None = None
    review_note: str | None = None
    withdrawn_by: str | None = None
    withdrawn_at: str | None = None
    withdrawal_reason: str | None = None


class AcceptanceTags(TagRecord):
    """A contributor's answer to a release (issue 14): measured on its own machine, on its own
    held-out text; numbers only. Written as `acceptance.<id>.<field>`, the verdict last (as
    `acceptance.<id>`), so a reader never sees a verdict without its figures."""

    PREFIX: ClassVar[str] = "acceptance."

    contributor: ContributorId
    anchor_perplexity: float
    release_perplexity: float
    change: float
    own_routing_share: float
    public_routing_share: float
    run_id: str
    answered_at: str
    verdict: Literal["accepted", "rejected"]

    def to_tags(self) -> dict[str, str]:
        key = f"{self.PREFIX}{self.contributor}"
        fields = self.model_dump(mode="json", exclude={"contributor", "verdict"})
        return {f"{key}.{name}": str(value) for name, value in fields.items()} | \
            {key: self.verdict}

    @classmethod
    def for_contributor(cls, contributor: str, tags: Mapping[str, str]) -> AcceptanceTags:
        key = f"{cls.PREFIX}{contributor}"
        fields = {name: tags[f"{key}.{name}"] for name in cls.model_fields
                  if f"{key}.{name}" in tags}
        return cls.model_validate(fields | {"contributor": contributor, "verdict": tags[key]})


class ReleaseTags(TagRecord):
    """A `flexo-release` version."""

    anchor_version: int
    anchor_fingerprint: str = Field(pattern=SHA256)
    experts: ExpertVersions
    excluded: CommaList = []
    gate: Literal["passed", "failed"]
    plan_digest: str
    checkpoint_sha256: str = Field(pattern=SHA256)  # the merged weights contributors evaluate
    release_run_id: str
    evaluation_run_id: str
    code_version: str
    production_since: str | None = None  # OSS MLflow keeps no alias history: flexo records it
    # contributor -> its answer (`acceptance.<id>.*` tags: one key set per contributor, so two
    # contributors answering at once never overwrite each other)
    acceptances: dict[str, AcceptanceTags] = Field({}, exclude=True)

    def holds(self, contributor: str) -> bool:
        return contributor in self.experts

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Self:
        answers = {key.split(".")[1] for key in tags if key.startswith(AcceptanceTags.PREFIX)}
        record = super().from_tags(tags)
        return record.model_copy(update={"acceptances": {
            c: AcceptanceTags.for_contributor(c, tags) for c in sorted(answers)
            if f"{AcceptanceTags.PREFIX}{c}" in tags}})  # the verdict is written last


class PromotionTags(TagRecord):
    """What moving `production` to a release adds to it."""

    production_since: str


TagsT = TypeVar("TagsT", bound=TagRecord)


class RegistryVersion(BaseModel, Generic[TagsT]):
    """One registered model version as the registry holds it, its tags parsed."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    run_id: str | None
    aliases: list[str] = []
    description: str = ""
    tags: TagsT
