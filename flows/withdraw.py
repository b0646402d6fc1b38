"""`withdraw_flow`: a contributor takes their module back.

    check there is something to withdraw -> revoke every version of `flexo-expert-<id>`
    (`approval_status=withdrawn`, who, when, why) -> release again without it (the release flow)
    -> take `production` away from a release that still holds the module

The Governance issue adds the ledger, purge and verification.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from flows import ledger
from flows.release import ReleaseConfig, ReleaseResult, release_flow
from flows.tracking import registry, runs
from governance.contributors import validate_contributor_id
from governance.tags import WithdrawalTags

EXPERIMENT = "flexo-withdraw"


class WithdrawalResult(BaseModel):
    contributor: str
    revoked_versions: list[int]
    release: ReleaseResult | None  # the re-release, when one was built
    production_version: int | None  # what `production` points at afterwards


@task(cache_policy=NO_CACHE)
def check_registered(contributor: str, actor: str) -> None:
    runs.configure()
    if not registry.expert_versions(contributor):
        raise ledger.refuse(actor, contributor, "withdraw",
                            f"no module of '{contributor}' is registered, so there is nothing "
                            f"to withdraw; `flexo review list` shows the contributors")


@task(retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def revoke(contributor: str, actor: str, reason: str) -> list[int]:
    """Tag every version not yet withdrawn; status last, so readers see a complete record."""
    from components.clock import timestamp

    tags = WithdrawalTags(withdrawn_by=actor, withdrawn_at=timestamp(), withdrawal_reason=reason)
    revoked = []
    for v in registry.expert_versions(contributor):
        if v.tags.approval_status != "withdrawn":
            registry.tag_version(v.name, v.version, tags)
            revoked.append(v.version)
    get_run_logger().info("revoked %s versions %s", registry.expert_model(contributor), revoked)
    return revoked


@task(retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def unpublish_if_holding(contributor: str) -> int | None:
    """If `production` still holds the contributor's module, remove the alias; returns what
    `production` points at afterwards."""
    current = registry.release_alias("production")
    if current is None:
        return None
    if not current.tags.holds(contributor):
        return current.version
    registry.remove_alias(registry.RELEASE_MODEL, "production")
    get_run_logger().warning("production release %s held %s's module: alias removed",
                             current.version, contributor)
    return None


@flow(name="withdraw")
def withdraw_flow(contributor: str, actor: str = "operator", reason: str = "",
                  rerelease: bool = True, release: ReleaseConfig | None = None,
                  ) -> WithdrawalResult:
    """Revoke `contributor`'s module versions, then release again without them (built and
    judged by `release`, default: the release flow's defaults)."""
    contributor = validate_contributor_id(contributor)
    ledger.record("withdrawal-request", actor, contributor, reason=reason)
    check_registered(contributor, actor)
    with runs.flow_run(EXPERIMENT, f"withdraw-{contributor}",
                       {"flexo.kind": "withdraw", "flexo.contributor": contributor,
                        "flexo.actor": actor}):
        revoked = revoke(contributor, actor, reason)
    rebuilt = release_flow(release) if rerelease else None
    production = unpublish_if_holding(contributor)
    return WithdrawalResult(contributor=contributor, revoked_versions=revoked, release=rebuilt,
                            production_version=production)
