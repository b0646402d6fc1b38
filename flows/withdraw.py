"""`withdraw_flow`: a contributor takes their module back, and it is really gone.

    the rule (the contributor itself or an operator) -> ledger: the request -> deny-list (from
    here on no runtime, evaluation or release uses the module, a loaded one included) -> revoke
    every version (`withdrawn`, aliases removed) -> keep the hashes of its tensors -> purge: its
    files from the artifact store, the module caches, every release holding it but `production`
    (which serves it masked until its replacement is promoted) -> ledger: the purge -> release
    again without it (candidate -> acceptance -> production; promotion verifies the new release
    against the kept hashes and purges the release it replaces)

A second request for a contributor already withdrawn changes nothing and says so; one that was
interrupted picks up where it stopped.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from flows import ledger, withdrawals
from flows.release import ReleaseConfig, ReleaseResult, release_flow
from flows.retries import retried
from flows.settings import flexo_home
from flows.tracking import registry, runs
from governance.access import require_withdrawer
from governance.contributors import validate_contributor_id
from governance.tags import WithdrawalTags
from governance.withdrawal import WithdrawalRecord

EXPERIMENT = "flexo-withdraw"


class WithdrawalResult(BaseModel):
    contributor: str
    already_withdrawn: bool = False  # nothing was left to do
    revoked_versions: list[int] = []
    purged: list[str] = []
    release: ReleaseResult | None = None  # the re-release, when one was built
    production_version: int | None = None  # what `production` points at (served masked)


@task(cache_policy=NO_CACHE)
def check_request(contributor: str, actor: str) -> WithdrawalRecord | None:
    """Refuse a withdrawal the rules do not allow; the finished record when there is nothing
    left to do."""
    from flows.policy import enforce

    runs.configure()
    enforce(actor, contributor, "withdraw",
            lambda policy: require_withdrawer(policy, contributor, actor))
    done = withdrawals.read_record(contributor)
    if done is not None and done.purged_at and contributor in withdrawals.denied():
        return done
    if not registry.expert_versions(contributor):
        raise ledger.refuse(actor, contributor, "withdraw",
                            f"no module of '{contributor}' is registered, so there is nothing "
                            f"to withdraw; `flexo review list` shows the contributors")
    return None


@task(cache_policy=NO_CACHE)
def deny(contributor: str, actor: str) -> None:
    from components.clock import timestamp

    if withdrawals.deny(contributor, actor, timestamp()):
        get_run_logger().info("%s is on the deny-list: no runtime routes to it from now on",
                              contributor)


@task(**retried(3))
def revoke(contributor: str, actor: str, reason: str) -> list[int]:
    """Tag every version not yet withdrawn (status last, so readers see a complete record) and
    remove every alias pointing at one."""
    from components.clock import timestamp

    tags = WithdrawalTags(withdrawn_by=actor, withdrawn_at=timestamp(), withdrawal_reason=reason)
    revoked = []
    for v in registry.expert_versions(contributor):
        if v.tags.approval_status != "withdrawn":
            registry.tag_version(v.name, v.version, tags)
            revoked.append(v.version)
        registry.remove_version_aliases(v.name, v.version)
    get_run_logger().info("revoked %s versions %s", registry.expert_model(contributor), revoked)
    return revoked


@task(**retried(3))
def fingerprint(contributor: str, actor: str, reason: str) -> WithdrawalRecord:
    """The hashes of every withdrawn version's own tensors, kept before the weights go (read
    from the store, where they still are, or from the record of an interrupted run)."""
    from components.clock import timestamp
    from components.tensor_hashes import module_tensor_hashes
    from governance.manifest import ExpertManifest

    earlier = withdrawals.read_record(contributor)
    versions = registry.expert_versions(contributor)
    hashes, audits = set(earlier.tensor_hashes if earlier else []), []
    for v in versions:
        if not registry.version_files_listing(v.name, v.version):
            continue  # purged by an earlier run: its hashes are in that run's record
        module = registry.download(v, "module", "modules")
        manifest = ExpertManifest.read(module)
        hashes |= module_tensor_hashes(module / manifest.weights_file)
        if manifest.privacy_audit:
            audits.append(f"v{v.version}: {manifest.privacy_audit.get('extracted')} of "
                          f"{manifest.privacy_audit.get('documents')} documents reproduced")
    audit = (f"audited at contribution ({'; '.join(audits)}); its probes are {contributor}'s own "
             f"text: {contributor} re-runs them on the new release with `flexo audit --model "
             f"<release> --data <its data>`" if audits else
             earlier.audit if earlier else "no extraction audit was run")
    record = WithdrawalRecord(
        contributor=contributor, requested_by=earlier.requested_by if earlier else actor,
        requested_at=earlier.requested_at if earlier else timestamp(), reason=reason,
        versions=sorted(v.version for v in versions), tensor_hashes=sorted(hashes), audit=audit)
    withdrawals.write_record(record)
    return record


@task(**retried(3))
def purge(record: WithdrawalRecord, actor: str) -> WithdrawalRecord:
    """Delete the module's files: each version's artifacts in the store, its caches under
    FLEXO_HOME, and every release that holds it except `production`."""
    from components.clock import timestamp

    contributor, home, purged = record.contributor, flexo_home(), []
    for v in registry.expert_versions(contributor):
        if registry.version_files_listing(v.name, v.version):
            purged.append(registry.delete_version_files(v.name, v.version))
    caches = [home / "modules" / contributor, home / "contributions" / contributor,
              *(home / "cache" / "modules").glob(f"{registry.expert_model(contributor)}-v*")]
    production = registry.release_alias("production")
    for release in registry.release_versions():
        if release.tags.holds(contributor) and release.version != getattr(production, "version",
                                                                          None):
            purged += withdrawals.purge_release(release.version)
    for path in caches:
        if path.exists():
            shutil.rmtree(path)
            purged.append(str(path.relative_to(home)))
    done = record.model_copy(update={"purged": sorted({*record.purged, *purged}),
                                     "purged_at": timestamp()})
    withdrawals.write_record(done)
    ledger.record("purge", actor, contributor, versions=",".join(map(str, record.versions)),
                  deleted=len(purged), tensors_fingerprinted=len(record.tensor_hashes))
    get_run_logger().info("purged %d locations holding %s's module", len(purged), contributor)
    return done


@task(cache_policy=NO_CACHE)
def purge_dvc(root: Path, record: WithdrawalRecord, actor: str) -> WithdrawalRecord:
    """The contributor's stages out of the DVC project at `root`, their outputs and cache
    objects garbage-collected (`flows.dvc_purge`)."""
    from flows.dvc_purge import purge_contributor

    done = purge_contributor(root, record.contributor)
    record = record.model_copy(update={"purged": sorted({*record.purged,
                                                         *(f"dvc:{o}" for o in done.outputs)})})
    withdrawals.write_record(record)
    ledger.record("purge", actor, record.contributor, dvc_stages=",".join(done.stages),
                  dvc_outputs=",".join(done.outputs),
                  dvc_cache_objects_removed=done.cache_objects_removed)
    get_run_logger().info("DVC project %s: stages %s removed, %d cache objects collected", root,
                          ", ".join(done.stages) or "none", done.cache_objects_removed)
    return record


@flow(name="withdraw")
def withdraw_flow(contributor: str, actor: str = "operator", reason: str = "",
                  rerelease: bool = True, release: ReleaseConfig | None = None,
                  dvc_repo: Path | None = None) -> WithdrawalResult:
    """Withdraw `contributor`'s module: masked at once everywhere, revoked, purged (from the DVC
    project at `dvc_repo` too, when given), and released again without it (built and judged by
    `release`, default: the release flow's defaults)."""
    contributor = validate_contributor_id(contributor)
    if check_request(contributor, actor) is not None:
        get_run_logger().info("%s was withdrawn already: nothing changed", contributor)
        return WithdrawalResult(contributor=contributor, already_withdrawn=True)
    ledger.record("withdrawal-request", actor, contributor, reason=reason)
    deny(contributor, actor)
    with runs.flow_run(EXPERIMENT, f"withdraw-{contributor}",
                       {"flexo.kind": "withdraw", "flexo.contributor": contributor,
                        "flexo.actor": actor}):
        revoked = revoke(contributor, actor, reason)
        record = purge(fingerprint(contributor, actor, reason), actor)
        if dvc_repo is not None:
            record = purge_dvc(dvc_repo, record, actor)
    rebuilt = release_flow(release, actor=actor) if rerelease else None
    production = registry.release_alias("production")
    return WithdrawalResult(contributor=contributor, revoked_versions=revoked,
                            purged=record.purged, release=rebuilt,
                            production_version=production.version if production else None)
