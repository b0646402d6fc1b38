"""A release's provenance, read from MLflow alone: release version -> anchor version -> each
expert version (contributor, data fingerprint, review, contribute and training runs) -> the
evaluation run. Nothing here reads FLEXO_HOME's files, so it works against a remote server."""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient
from pydantic import BaseModel

from flows import registry, tracking


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


def _child_run(parent_run_id: str, name: str) -> str | None:
    parent = MlflowClient().get_run(parent_run_id)
    runs = mlflow.search_runs(experiment_ids=[parent.info.experiment_id], output_format="list",
                              filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and "
                                            f"tags.mlflow.runName = '{name}'")
    return runs[0].info.run_id if runs else None


def release_lineage(version: int) -> ReleaseLineage:
    tracking.configure()
    release = registry.version(registry.RELEASE_MODEL, version)
    tags = release.tags
    anchor = registry.version(registry.ANCHOR_MODEL, tags["anchor_version"])
    experts = []
    for item in filter(None, tags.get("experts", "").split(",")):
        contributor, number = item.split(":")
        v = registry.version(registry.expert_model(contributor), number)
        experts.append(ExpertLineage(
            contributor=contributor, registered_model=v.name, version=int(v.version),
            status=v.tags.get("approval_status", "?"), weights_sha256=v.tags["weights_sha256"],
            data_fingerprint=v.tags["data_fingerprint"],
            reviewed_by=v.tags.get("reviewed_by", ""), reviewer_kind=v.tags.get("reviewer_kind", ""),
            reviewed_at=v.tags.get("reviewed_at", ""), contribute_run_id=v.run_id,
            training_run_id=_child_run(v.run_id, "train")))
    return ReleaseLineage(
        version=int(release.version), aliases=sorted(release.aliases), gate=tags.get("gate", "?"),
        release_run_id=tags["release_run_id"], evaluation_run_id=tags["evaluation_run_id"],
        anchor_version=int(anchor.version), anchor_fingerprint=anchor.tags["anchor_fingerprint"],
        anchor_run_id=anchor.run_id, experts=experts,
        excluded=[x for x in tags.get("excluded", "").split(",") if x])
