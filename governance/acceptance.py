"""Contributor acceptance (issue 14): only a contributor can measure whether a release helps its
domain, so `production` moves only when every contributor in a release has said yes.

A contributor evaluates the candidate on its own held-out text, on its own machine, and answers
with numbers (the record below); the operator's gate (public text) must have passed too. No torch:
the figures arrive as numbers.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from governance.contributors import ContributorId
from governance.tags import ReleaseTags


class AcceptanceReport(BaseModel):
    """What `flexo accept --json` prints and what leaves the contributor's machine: numbers."""

    contributor: ContributorId
    release: int
    anchor_perplexity: float = Field(gt=0)  # on the contributor's held-out text
    release_perplexity: float = Field(gt=0)
    change: float  # release / anchor - 1; negative is better
    own_routing_share: float = Field(ge=0, le=1)  # its expert's router mass on its own text
    public_routing_share: float = Field(ge=0, le=1)  # ... and on public held-out text
    accepted: bool


def accepts(change: float, margin: float) -> bool:
    """The contributor's policy: its own-domain perplexity must fall, by at least `margin`
    (0: any fall; no change is no help)."""
    return change < 0 and change <= -margin


def promotion_blockers(tags: ReleaseTags, version: int = 0, withdrawn: frozenset[str] = frozenset(),
                       production: int | None = None) -> list[str]:
    """Why release `version` may not become `production` yet; [] when it may: the operator's
    gate passed, every included contributor accepted it and none has withdrawn since, and
    `production` (its current version) is not this one or a newer one."""
    blockers = [] if tags.gate == "passed" else ["the operator's gate failed"]
    for contributor in tags.experts:
        answer = tags.acceptances.get(contributor)
        if answer is None:
            blockers.append(f"{contributor} has not answered")
        elif answer.verdict == "rejected":
            blockers.append(f"{contributor} rejected it (own-domain perplexity "
                            f"{answer.change:+.1%})")
        if contributor in withdrawn:
            blockers.append(f"{contributor} has withdrawn")
    if production is not None and production > version:
        blockers.append(f"production already holds the newer version {production}")
    if production is not None and production == version:
        blockers.append("it is production already")
    return blockers
