"""The expert-module manifest (DESIGN §3): what a contributor publishes next to the weights.

It carries digests and counts, never text: the data fingerprint describes the corpus without
revealing it, the weights hash pins the exact tensors a reviewer approved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from governance.contributors import ContributorId
from governance.policy import ModuleFigures

MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "expert.safetensors"


class DataFingerprint(BaseModel):
    model_config = ConfigDict(frozen=True)

    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    documents: int = Field(ge=0)
    characters: int = Field(ge=0)
    bytes: int = Field(ge=0)


class ProxySelection(BaseModel):
    """Public documents that resemble the contributor's data, chosen by its own classifier on its
    own machine (DESIGN §1.6, §3): ids of *public* documents and numbers, never its text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pool_fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")  # the public pool the ids refer to
    ids: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(min_length=1)
    scores: list[float]  # the classifier's probability of "resembles the data", best first
    threshold: float  # the lowest chosen score
    tokens: int = Field(gt=0)  # anchor tokens the chosen documents hold
    auc: float = Field(ge=0, le=1)  # held-out ROC AUC, contributor vs public documents
    own_documents: int = Field(gt=0)  # how many of its documents the classifier saw (a count)
    pool_documents: int = Field(gt=0)


class ExpertManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int = 1
    contributor: ContributorId
    anchor_fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    weights_file: str = WEIGHTS_FILE
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    data_fingerprint: DataFingerprint
    training: dict[str, Any]  # the full training config, as run
    metrics: dict[str, float] = {}
    privacy_audit: dict[str, Any] | None = None  # extraction audit, when run
    data_checks: dict[str, Any] | None = None  # validation statistics and PII counts by kind
    differential_privacy: dict[str, float] | None = None  # epsilon, delta, noise, sample rate
    proxies: ProxySelection | None = None  # what release router tuning teaches this expert on
    licence: str = "proprietary"
    code_version: str
    created_at: str  # when the module was written, by the contributor's clock

    def figures(self) -> ModuleFigures:
        """What the policy's module gates judge at review: the local evaluation's changes, the
        audit's extraction rate, the DP epsilon spent, the licence."""
        audit, dp = self.privacy_audit, self.differential_privacy
        return ModuleFigures(own_change=self.metrics.get("local.domain_change"),
                             public_change=self.metrics.get("local.public_change"),
                             extraction_rate=audit["rate"] if audit else None,
                             dp_epsilon=dp["epsilon"] if dp else None, licence=self.licence)

    def write(self, directory: Path) -> Path:
        path = Path(directory) / MANIFEST_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path

    @classmethod
    def read(cls, directory: Path) -> ExpertManifest:
        return cls.model_validate_json((Path(directory) / MANIFEST_FILE).read_text())
