"""`promote_flow`: move `production` to a release once everyone it claims to help has said yes.

    read release V (default: the `candidate`) and its contributors' answers -> the rule
    (`governance.acceptance.promotion_blockers`: the operator's gate passed, every included
    contributor accepted, none of them has withdrawn since, production never moves backwards)
    -> verify the release against every withdrawn module (no tensor of one by hash, no name in
    its manifest or model card; a failure blocks) -> move `production` (with `production_since`)
    and point `releases/production` at it, emit `flexo.release.promoted`, record each
    verification on the ledger, and purge the releases still holding a withdrawn module; or
    leave everything as it is and log why

prefect.yaml runs it on every `flexo.release.accepted`: the last acceptance promotes.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from pydantic import BaseModel

from flows import events, ledger, withdrawals
from flows.retries import retried
from flows.settings import flexo_home
from flows.tracking import registry, releases, runs
from governance.acceptance import promotion_blockers
from governance.tags import AcceptanceTags, RegistryVersion, ReleaseTags
from governance.withdrawal import ReleaseCheck

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


@task(**retried(3))
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


def withdrawn_among(contributors: dict[str, int] | list[str]) -> frozenset[str]:
    """Those of `contributors` who have withdrawn (any version of theirs says so)."""
    return frozenset(c for c in contributors
                     if any(v.tags.approval_status == "withdrawn"
                            for v in registry.expert_versions(c)))


@task(**retried(3))
def check(release: RegistryVersion[ReleaseTags]) -> list[str]:
    """Everything that stands between this release and `production`."""
    withdrawn = withdrawn_among(release.tags.experts)
    current = registry.release_alias("production")
    blockers = promotion_blockers(release.tags, release.version, withdrawn,
                                  current.version if current else None)
    log = get_run_logger()
    for blocker in blockers:
        log.info("release %d stays as it is: %s", release.version, blocker)
    return blockers


def checkpoint_dir(version: int) -> Path:
    """Release `version`'s files: installed under FLEXO_HOME, or downloaded from the store."""
    local = flexo_home() / "releases" / f"v{version}"
    return local if local.is_dir() else releases.download_checkpoint(version)


@task(**retried(2))
def verify_withdrawals(version: int) -> list[ReleaseCheck]:
    """The release against every withdrawn module's kept tensor hashes and its contributor's
    name; what fails blocks the promotion."""
    checks = withdrawals.check_release(checkpoint_dir(version), version)
    for c in checks:
        get_run_logger().info("release %d against withdrawn %s: %d of %d tensors found, named in "
                              "%s: %s", version, c.contributor, c.matching_tensors,
                              c.tensors_checked, c.named_in or "nothing",
                              "PASS" if c.passed else "FAIL")
    return checks


@task(**retried(2))
def settle_withdrawals(version: int, checks: list[ReleaseCheck], actor: str = "operator") -> None:
    """Production is free of every withdrawn module: the verifications on the ledger, and the
    releases still holding one (the production it replaced) purged."""
    for c in checks:
        ledger.record("verification", actor, c.contributor, release=version,
                      passed=c.passed, tensors_checked=c.tensors_checked,
                      matching_tensors=c.matching_tensors, named_in=",".join(c.named_in),
                      audit=c.audit)
        record = withdrawals.read_record(c.contributor)
        if record is not None and record.verified_release is None:
            withdrawals.write_record(record.model_copy(update={"verified_release": version}))
    gone = frozenset(c.contributor for c in checks)
    for release in registry.release_versions():
        if release.version != version and gone.intersection(release.tags.experts) and \
                registry.version_files_listing(registry.RELEASE_MODEL, release.version):
            deleted = withdrawals.purge_release(release.version)
            ledger.record("purge", actor, f"{registry.RELEASE_MODEL} v{release.version}",
                          withdrawn=",".join(sorted(gone.intersection(release.tags.experts))),
                          deleted=len(deleted))


@task(**retried(2))
def move_production(version: int, actor: str = "operator") -> Path:
    """The alias and `production_since`, then `releases/production` (what `flexo generate`
    loads) pointed at the release's files in one atomic swap of the link."""
    from components.atomic import atomic_file

    releases.promote(version)
    local = flexo_home() / "releases" / f"v{version}"
    target = checkpoint_dir(version)
    local.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(local.with_name("production")) as link:
        link.symlink_to(target.name if target == local else target)
    events.emit(events.RELEASE_PROMOTED, f"flexo.release.{version}", {"version": version})
    ledger.record("promotion", actor, f"{registry.RELEASE_MODEL} v{version}")
    get_run_logger().info("%s version %d is production", registry.RELEASE_MODEL, version)
    return target


@flow(name="promote")
def promote_flow(release: int | None = None, actor: str = "operator") -> PromotionResult:
    """Make release `release` (default: the candidate) production if every contributor in it
    has accepted it; otherwise change nothing and say why. `actor`: the operator on whose
    behalf (the ledger's actor)."""
    record = read_release(release)
    with runs.flow_run(EXPERIMENT, f"promote-v{record.version}",
                       {"flexo.kind": "promote", "flexo.release_version": str(record.version)}):
        blockers = check(record)
        checks = [] if blockers else verify_withdrawals(record.version)
        blockers += [failure for c in checks for failure in c.failures()]
        if blockers:
            ledger.record("refusal", actor, f"{registry.RELEASE_MODEL} v{record.version}",
                          action="promote", reason="; ".join(blockers))
        else:
            move_production(record.version, actor)
            settle_withdrawals(record.version, checks, actor)
    production = registry.release_alias("production")
    return PromotionResult(version=record.version, promoted=not blockers, blockers=blockers,
                           production_version=production.version if production else None)
