"""Withdrawal records and rules: what a withdrawal keeps (hashes, never weights), and when a
release counts as free of a withdrawn module (who may withdraw: `governance.access`).

The record (`withdrawals/<contributor>.json` under FLEXO_HOME, written by flows) holds the hashes
of every tensor of every withdrawn version, taken before the weights are deleted: the only way left
to prove, later, that a release holds none of them.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from governance.contributors import ContributorId


class WithdrawalRecord(BaseModel):
    contributor: ContributorId
    requested_by: str
    requested_at: str
    reason: str = ""
    versions: list[int]  # the versions revoked
    tensor_hashes: list[str]  # sha256 of each of their own tensors (components.tensor_hashes)
    # the modules' extraction audits: their probes are the contributor's own text, so only the
    # contributor can re-run them on a release (`flexo audit --model ... --data ...`)
    audit: str = "no extraction audit was run"
    purged: list[str] = []  # what was deleted, as store paths and FLEXO_HOME-relative paths
    purged_at: str | None = None  # set once the purge finished: a repeat has nothing left to do
    verified_release: int | None = None  # the first production release verified free of it


class ReleaseCheck(BaseModel):
    """A release checked against one withdrawn module."""

    release: int
    contributor: ContributorId
    tensors_checked: int  # withdrawn tensor hashes compared
    matching_tensors: int  # of them found in the release
    named_in: list[str]  # release files that name the contributor
    audit: str  # what became of the module's extraction-audit probes

    @property
    def passed(self) -> bool:
        return self.matching_tensors == 0 and not self.named_in

    def failures(self) -> list[str]:
        found = []
        if self.matching_tensors:
            found.append(f"{self.matching_tensors} of {self.tensors_checked} tensors of "
                         f"{self.contributor}'s withdrawn module are in release {self.release}")
        if self.named_in:
            found.append(f"release {self.release}'s {', '.join(self.named_in)} name "
                         f"{self.contributor}")
        return found


def names_contributor(text: str, contributor: str) -> bool:
    """Whether `text` names the contributor id as a whole word (ids are a-z, 0-9 and '-')."""
    return re.search(rf"(?<![a-z0-9-]){re.escape(contributor)}(?![a-z0-9-])", text) is not None
