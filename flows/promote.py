"""`promote_flow`: move `production` to a release once everyone it claims to help has said yes.

    read release V (default: the `candidate`) and its contributors' answers -> the rule
    (`governance.acceptance.promotion_blockers`: the operator's gate passed, every included
    contributor accepted, none of them has withdrawn since, production never moves backwards)
    -> move `production` (with `production_since`) and point `releases/production` at it, and emit
    `flexo.release.promoted`; or leave everything as it is and log why

prefect.yaml runs it on every `flexo.release.accepted`: the last acceptance promotes.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from flows import events, ledger
from flows.settings import flexo_home
from flows.tracking import registry, releases, runs
from governance.acceptance import promotion_blockers
from governance.tags import AcceptanceTags, RegistryVersion, ReleaseTags

EXPERIMENT = "flexo-release"


class PromotionResult(BaseModel):
    version: int
    promoted: bool
    blockers: list[str]  # why not, when not
    production_version: int | None  # what `production` points at afterwards


def release_answers(version: int | None,
                    ) -> tuple[RegistryVersion[ReleaseTags], dict[str, AcceptanceTags | None]]:
    """Release `version` (default: the candidate) and each included contributor's answer (None:
    not yet), for `flexo release status`."""
    record = read_release.fn(version)
    return record, {c: record.tags.acceptances.get(c) for c in record.tags.experts}


@task(retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def read_release(version: int | None) -> RegistryVersion[ReleaseTags]:
    runs.configure()
    if version is not None:
        return registry.release_version(version)
    candidate = registry.release_alias("candidate")
    if candidate is None:
        raise ledger.refuse("operator", registry.RELEASE_MODEL, "promote",
                            f"no {registry.RELEASE_MODEL} version is a candidate; build one "
                            f"with `flexo release`")
    return candidate


@task(retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def check(release: RegistryVersion[ReleaseTags]) -> list[str]:
    """Everything that stands between this release and `production`."""
    withdrawn = frozenset(c for c in release.tags.experts
                          if any(v.tags.approval_status == "withdrawn"
                                 for v in registry.expert_versions(c)))
    current = registry.release_alias("production")
    blockers = promotion_blockers(release.tags, release.version, withdrawn,
                                  current.version if current else None)
    log = get_run_logger()
    for blocker in blockers:
        log.info("release %d stays as it is: %s", release.version, blocker)
    return blockers


@task(retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def move_production(version: int) -> Path:
    """The alias and `production_since`, then `releases/production` (what `flexo generate`
    loads) pointed at the release's files in one atomic swap of the link."""
    from components.atomic import atomic_file

    releases.promote(version)
    local = flexo_home() / "releases" / f"v{version}"
    target = local if local.is_dir() else releases.download_checkpoint(version)
    local.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(local.with_name("production")) as link:
        link.symlink_to(target.name if target == local else target)
    events.emit(events.RELEASE_PROMOTED, f"flexo.release.{version}", {"version": version})
    ledger.record("promotion", "operator", f"{registry.RELEASE_MODEL} v{version}")
    get_run_logger().info("%s version %d is production", registry.RELEASE_MODEL, version)
    return target


@flow(name="promote")
def promote_flow(release: int | None = None) -> PromotionResult:
    """Make release `release` (default: the candidate) production if every contributor in it
    has accepted it; otherwise change nothing and say why."""
    record = read_release(release)
    with runs.flow_run(EXPERIMENT, f"promote-v{record.version}",
                       {"flexo.kind": "promote", "flexo.release_version": str(record.version)}):
        blockers = check(record)
        if blockers:
            ledger.record("refusal", "operator", f"{registry.RELEASE_MODEL} v{record.version}",
                          action="promote", reason="; ".join(blockers))
        else:
            move_production(record.version)
    production = registry.release_alias("production")
    return PromotionResult(version=record.version, promoted=not blockers, blockers=blockers,
                           production_version=production.version if production else None)
