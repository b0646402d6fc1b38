"""`withdraw_flow`: a contributor takes their module back. This skeleton revokes every version of
`flexo-expert-<id>` in the registry (tag `approval_status=withdrawn`), rebuilds the release
without it and, should that release fail its gate, takes `production` away from any release
that still holds the module. The Governance issue adds the ledger, purge and verification."""

from __future__ import annotations

import datetime as dt

import mlflow
from mlflow import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from components.errors import GovernanceError
from flows import registry, tracking
from flows.release import ReleaseResult
from governance.contributors import validate_contributor_id

REQUESTED_EVENT = "flexo.withdrawal.requested"
EXPERIMENT = "flexo-withdraw"


class WithdrawalResult(BaseModel):
    contributor: str
    revoked_versions: list[int]
    release: ReleaseResult | None  # the re-release, when one was built
    production_version: int | None  # what `production` points at afterwards


@task(retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def revoke(contributor: str, actor: str, reason: str) -> list[int]:
    """Tag every version not yet withdrawn; status last, so readers see a complete record."""
    client = MlflowClient()
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    revoked = []
    for v in registry.versions(registry.expert_model(contributor)):
        if v.tags.get("approval_status") == "withdrawn":
            continue
        for key, value in {"withdrawn_by": actor, "withdrawn_at": now, "withdrawal_reason": reason,
                           "approval_status": "withdrawn"}.items():
            client.set_model_version_tag(v.name, v.version, key, value)
        revoked.append(int(v.version))
    get_run_logger().info("revoked %s versions %s", registry.expert_model(contributor), revoked)
    return revoked


@task(retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def unpublish_if_holding(contributor: str) -> int | None:
    """If `production` still holds the contributor's module, remove the alias; returns what
    `production` points at afterwards."""
    current = registry.alias_version(registry.RELEASE_MODEL, "production")
    if current is None:
        return None
    held = {e.split(":")[0] for e in current.tags.get("experts", "").split(",") if e}
    if contributor not in held:
        return int(current.version)
    MlflowClient().delete_registered_model_alias(registry.RELEASE_MODEL, "production")
    get_run_logger().warning("production release %s held %s's module: alias removed",
                             current.version, contributor)
    return None


@flow(name="withdraw")
def withdraw_flow(contributor: str, actor: str = "operator", reason: str = "",
                  rerelease: bool = True) -> WithdrawalResult:
    """Revoke `contributor`'s module versions, then release again without them."""
    from flows.release import release_flow

    contributor = validate_contributor_id(contributor)
    tracking.configure()
    if not registry.versions(registry.expert_model(contributor)):
        raise GovernanceError(f"no module of '{contributor}' is registered, so there is nothing "
                              f"to withdraw; `flexo review list` shows the contributors")
    tracking.use_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"withdraw-{contributor}"):
        mlflow.set_tags({"flexo.kind": "withdraw", "flexo.contributor": contributor,
                         "flexo.actor": actor})
        revoked = revoke(contributor, actor, reason)
    release = release_flow() if rerelease else None
    production = unpublish_if_holding(contributor)
    return WithdrawalResult(contributor=contributor, revoked_versions=revoked,
                            release=release,
                            production_version=production)
