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
from governance.policy import ModuleFigures
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


class KeyedTags(TagRecord):
    """A record that several parties add to one version side by side, each under its own key:
    `<PREFIX><key>.<field>`, and the `LAST` field written last as `<PREFIX><key>`, so a reader
    never sees it without the rest and two parties writing at once never overwrite each other."""

    PREFIX: ClassVar[str]
    KEY: ClassVar[str]  # the field that names the party
    LAST: ClassVar[str]  # the field written last, as the bare key

    def to_tags(self) -> dict[str, str]:
        key = f"{self.PREFIX}{getattr(self, self.KEY)}"
        fields = self.model_dump(mode="json", exclude={self.KEY, self.LAST}, exclude_none=True)
        return {f"{key}.{name}": str(value) for name, value in fields.items()} | \
            {key: str(getattr(self, self.LAST))}

    @classmethod
    def keyed(cls, tags: Mapping[str, str]) -> dict[str, Self]:
        """Every complete record among `tags` (its last field written), by party."""
        found = {}
        for party in sorted({k[len(cls.PREFIX):].split(".")[0] for k in tags
                             if k.startswith(cls.PREFIX)}):
            key = f"{cls.PREFIX}{party}"
            if key in tags:
                fields = {name: tags[f"{key}.{name}"] for name in cls.model_fields
                          if f"{key}.{name}" in tags}
                found[party] = cls.model_validate(fields | {cls.KEY: party, cls.LAST: tags[key]})
        return found


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
    # What the contributor's own flow measured and published (the manifest's ModuleFigures),
    # which the policy's module gates judge at review: relative perplexity changes of anchor +
    # module against the anchor (own held-out text, public text), the extraction audit's rate,
    # the DP budget spent.
    own_change: float | None = None
    public_change: float | None = None
    extraction_rate: float | None = None  # None: no audit was run
    dp_epsilon: float | None = None  # None: trained without differential privacy
    approval_status: ApprovalStatus = "pending"


class ApprovalTags(KeyedTags):
    """One reviewer's approval of an expert version (`approval.<reviewer>.*`, the time last):
    the version turns `approved` once the policy's number of reviewers have approved it."""

    PREFIX: ClassVar[str] = "approval."
    KEY: ClassVar[str] = "reviewer"
    LAST: ClassVar[str] = "at"

    reviewer: ContributorId
    reviewer_kind: ReviewerKind = "human"  # an approval made in the registry by hand has none
    note: str = ""
    at: str


class WaiverTags(KeyedTags):
    """A module gate a reviewer waived for this version (`waiver.<rule>.*`, the note last): the
    gate is not applied to it again, and the reason stays on record."""

    PREFIX: ClassVar[str] = "waiver."
    KEY: ClassVar[str] = "rule"
    LAST: ClassVar[str] = "note"

    rule: str
    reviewer: ContributorId
    at: str
    note: str = Field(min_length=1)


class ReviewTags(TagRecord):
    """What a settled review adds to an expert version: the reviewers whose approvals made it
    `approved` (comma-joined, in order), or the one who rejected it."""

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
    own_change: float | None = None
    public_change: float | None = None
    extraction_rate: float | None = None
    dp_epsilon: float | None = None
    approval_status: ApprovalStatus = "pending"
    reviewed_by: str | None = None
    reviewer_kind: str | None = None
    reviewed_at: str | None = None
    review_note: str | None = None
    withdrawn_by: str | None = None
    withdrawn_at: str | None = None
    withdrawal_reason: str | None = None
    approvals: dict[str, ApprovalTags] = Field({}, exclude=True)  # reviewer -> approval
    waivers: dict[str, WaiverTags] = Field({}, exclude=True)  # gate rule -> waiver

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Self:
        return super().from_tags(tags).model_copy(update={
            "approvals": ApprovalTags.keyed(tags), "waivers": WaiverTags.keyed(tags)})

    def figures(self) -> ModuleFigures:
        """What the module's gates judge, as published."""
        return ModuleFigures.model_validate(self.model_dump(include=set(ModuleFigures.model_fields)))


class AcceptanceTags(KeyedTags):
    """A contributor's answer to a release (issue 14): measured on its own machine, on its own
    held-out text; numbers only. Written as `acceptance.<id>.<field>`, the verdict last (as
    `acceptance.<id>`), so a reader never sees a verdict without its figures."""

    PREFIX: ClassVar[str] = "acceptance."
    KEY: ClassVar[str] = "contributor"
    LAST: ClassVar[str] = "verdict"

    contributor: ContributorId
    anchor_perplexity: float
    release_perplexity: float
    change: float
    own_routing_share: float
    public_routing_share: float
    run_id: str
    answered_at: str
    verdict: Literal["accepted", "rejected"]


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
        return super().from_tags(tags).model_copy(update={
            "acceptances": AcceptanceTags.keyed(tags)})  # answers whose verdict is written


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
