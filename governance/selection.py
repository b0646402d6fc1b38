"""Which module versions a release takes (DESIGN §4): per contributor, the newest approved
version trained on the release's anchor. Everyone else is left out with the reason on record."""

from __future__ import annotations

from pydantic import BaseModel

from governance.release import ReleasedExpert
from governance.tags import ExpertVersionTags, RegistryVersion

ExpertVersion = RegistryVersion[ExpertVersionTags]


class Selection(BaseModel):
    anchor_version: int
    anchor_fingerprint: str
    experts: list[ReleasedExpert]
    excluded: dict[str, str]  # contributor -> why they are not in
    # withdrawn contributors: left out without a trace in the release's files (the ledger keeps
    # the withdrawal), so that a release does not name who withdrew from it
    withdrawn: list[str] = []


def select_experts(anchor_version: int, anchor_fingerprint: str,
                   candidates: dict[str, list[ExpertVersion]],
                   denied: frozenset[str] = frozenset()) -> Selection:
    """`candidates`: each contributor's versions, newest first; `denied`: the deny-list, which
    holds a contributor from the moment it asks to withdraw, before its versions are tagged."""
    experts, excluded, withdrawn = [], {}, []
    for contributor, found in sorted(candidates.items()):
        statuses = [v.tags.approval_status for v in found]
        approved = [v for v in found if v.tags.approval_status == "approved"]
        if contributor in denied or "withdrawn" in statuses:
            withdrawn.append(contributor)
            continue
        if not approved:
            excluded[contributor] = f"no approved version ({statuses.count('pending')} pending)"
            continue
        v = approved[0]
        if v.tags.anchor_fingerprint != anchor_fingerprint:
            excluded[contributor] = (f"version {v.version} was trained on another anchor "
                                     f"({v.tags.anchor_fingerprint[:12] or '?'})")
            continue
        experts.append(ReleasedExpert(
            contributor=contributor, registered_model=v.name, version=v.version,
            weights_sha256=v.tags.weights_sha256, data_fingerprint=v.tags.data_fingerprint,
            licence=v.tags.licence,
            reviewed_by=v.tags.reviewed_by or "?",
            reviewer_kind=v.tags.reviewer_kind or "?", contribute_run_id=v.run_id or ""))
    return Selection(anchor_version=anchor_version, anchor_fingerprint=anchor_fingerprint,
                     experts=experts, excluded=excluded, withdrawn=withdrawn)
