"""A release's provenance, read from MLflow alone: release version -> anchor version -> each
expert version (contributor, data fingerprint, review, contribute and training runs) -> the
evaluation run. Nothing here reads FLEXO_HOME's files, so it works against a remote server."""

from __future__ import annotations

from pydantic import BaseModel

from flows.tracking import registry, runs


class ExpertLineage(BaseModel):
    contributor: str
    registered_model: str
    version: int
    status: str
    weights_sha256: str
    data_fingerprint: str
    reviewed_by: str
    reviewer_kind: str
    reviewed_at: str
    contribute_run_id: str
    training_run_id: str | None  # the contribute run's `train` child


class ReleaseLineage(BaseModel):
    version: int
    aliases: list[str]
    gate: str
    release_run_id: str
    evaluation_run_id: str
    anchor_version: int
    anchor_fingerprint: str
    anchor_run_id: str
    experts: list[ExpertLineage]
    excluded: list[str]


def release_lineage(version: int) -> ReleaseLineage:
    runs.configure()
    release = registry.release_version(version)
    tags = release.tags
    anchor = registry.anchor_version(number=tags.anchor_version)
    experts = []
    for contributor, number in tags.experts.items():
        v = registry.expert_version(contributor, number)
        experts.append(ExpertLineage(
            contributor=contributor, registered_model=v.name, version=v.version,
            status=v.tags.approval_status, weights_sha256=v.tags.weights_sha256,
            data_fingerprint=v.tags.data_fingerprint, reviewed_by=v.tags.reviewed_by or "",
            reviewer_kind=v.tags.reviewer_kind or "", reviewed_at=v.tags.reviewed_at or "",
            contribute_run_id=v.run_id or "",
            training_run_id=runs.child_run_id(v.run_id, "train") if v.run_id else None))
    return ReleaseLineage(
        version=release.version, aliases=release.aliases, gate=tags.gate,
        release_run_id=tags.release_run_id, evaluation_run_id=tags.evaluation_run_id,
        anchor_version=anchor.version, anchor_fingerprint=anchor.tags.anchor_fingerprint,
        anchor_run_id=anchor.run_id or "", experts=experts, excluded=tags.excluded)
