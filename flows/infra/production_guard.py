"""`production` moved by hand (the MLflow UI, a script) to a release that has not passed
acceptance is put back (issue 17): the registry's alias is not the place where the rule lives, so
the events receiver checks it on every alias move and once when it starts (what a receiver that
was down missed).

Valid: `governance.acceptance.promotion_blockers` finds nothing (the operator's gate passed,
every contributor in it accepted, none has withdrawn). Put back: to the newest other release
that flexo promoted (`production_since`) and that is still valid, or no `production` at all.
"""

from __future__ import annotations

from pydantic import BaseModel

from flows import events, ledger
from flows.promote import withdrawn_among
from flows.tracking import registry, runs
from governance.acceptance import promotion_blockers
from governance.tags import RegistryVersion, ReleaseTags

ACTOR = "flexo-events"  # who the ledger names for what the receiver does


class Revert(BaseModel):
    moved_to: int  # the version `production` was moved to by hand
    blockers: list[str]  # why it may not be production
    restored: int | None  # what `production` points at now (None: removed)


def blockers(release: RegistryVersion[ReleaseTags]) -> list[str]:
    return promotion_blockers(release.tags, release.version,
                              withdrawn_among(release.tags.experts))


def guard_production() -> Revert | None:
    """Check the release `production` names; put it back when it may not be production, on
    the ledger and as `flexo.release.reverted`. None when nothing was wrong."""
    runs.configure()
    current = registry.release_alias("production")
    if current is None:
        return None
    why = blockers(current)
    if not why:
        return None
    fallback = next((r for r in registry.release_versions()
                     if r.version != current.version and r.tags.production_since
                     and not blockers(r)), None)
    if fallback is None:
        registry.remove_alias(registry.RELEASE_MODEL, "production")
    else:
        registry.set_alias(registry.RELEASE_MODEL, "production", fallback.version)
    revert = Revert(moved_to=current.version, blockers=why,
                    restored=fallback.version if fallback else None)
    ledger.record("alias-revert", ACTOR, f"{registry.RELEASE_MODEL} v{current.version}",
                  alias="production", reason="; ".join(why),
                  restored=f"v{revert.restored}" if revert.restored else "none")
    events.emit(events.RELEASE_REVERTED, f"flexo.release.{current.version}",
                revert.model_dump(mode="json"))
    return revert
