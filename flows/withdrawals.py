"""What withdrawals leave in this home, and what every other flow checks against it:

- the deny-list (`FLEXO_HOME/deny-list.json`): experts no runtime, evaluation or release may use,
  from the moment their withdrawal is requested;
- one record per withdrawn contributor (`FLEXO_HOME/withdrawals/<id>.json`): the versions revoked,
  the hashes of their tensors (taken before the weights are deleted), what was purged;
- the check that a release holds nothing of any withdrawn module (tensor hashes, names in its
  files), which promotion runs before `production` moves.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from components.atomic import atomic_write, exclusive
from components.deny_list import DENY_LIST_FILE, DenyList, denied_names
from flows.settings import flexo_home
from governance.withdrawal import ReleaseCheck, WithdrawalRecord, names_contributor

RECORDS = "withdrawals"
RELEASE_FILES = ("release.json", "README.md")  # the release's manifest and model card


def deny_list_path() -> Path:
    return flexo_home() / DENY_LIST_FILE


def denied() -> frozenset[str]:
    return denied_names(deny_list_path())


def refuse_denied(actor: str, requested: list[str]) -> None:
    """A request naming a withdrawn expert is refused (on the ledger), not quietly served
    without it."""
    from flows import ledger

    gone = sorted(denied().intersection(requested))
    if gone:
        raise ledger.refuse(actor, gone[0], "use", f"{', '.join(gone)} withdrew; its module is "
                            f"no longer served: leave it out of --only")


def deny(contributor: str, actor: str, since: str) -> bool:
    """Put `contributor` on the deny-list (read and replaced under a lock, so two withdrawals at
    once both land); False when it was on it already."""
    path = deny_list_path()
    with exclusive(path.with_name(".deny-list.lock")):
        current = DenyList.read(path)
        if contributor in current.denied:
            return False
        current.deny(contributor, since, actor).write(path)
    return True


def _record_path(contributor: str) -> Path:
    return flexo_home() / RECORDS / f"{contributor}.json"


def read_record(contributor: str) -> WithdrawalRecord | None:
    path = _record_path(contributor)
    return WithdrawalRecord.model_validate_json(path.read_text()) if path.is_file() else None


def write_record(record: WithdrawalRecord) -> None:
    atomic_write(_record_path(record.contributor), record.model_dump_json(indent=2) + "\n")


def records() -> list[WithdrawalRecord]:
    folder = flexo_home() / RECORDS
    return [WithdrawalRecord.model_validate_json(p.read_text())
            for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def check_release(directory: Path, version: int) -> list[ReleaseCheck]:
    """Release `version` (its checkpoint in `directory`) against every withdrawn module: its
    tensors by hash, its manifest and model card by name."""
    from components.tensor_hashes import checkpoint_tensor_hashes

    withdrawn = records()
    if not withdrawn:
        return []
    held = checkpoint_tensor_hashes(directory)
    texts = {name: (directory / name).read_text(encoding="utf-8")
             for name in RELEASE_FILES if (directory / name).is_file()}
    return [ReleaseCheck(
        release=version, contributor=r.contributor, tensors_checked=len(r.tensor_hashes),
        matching_tensors=len(held.intersection(r.tensor_hashes)),
        named_in=[name for name, text in texts.items() if names_contributor(text, r.contributor)],
        audit=r.audit) for r in withdrawn]


def purge_release(version: int) -> list[str]:
    """A release's checkpoint out of the artifact store and FLEXO_HOME (its registry version and
    tags stay, as the record); aliases on it are removed."""
    from flows.tracking import registry

    home, gone = flexo_home(), []
    registry.remove_version_aliases(registry.RELEASE_MODEL, version)
    if registry.version_files_listing(registry.RELEASE_MODEL, version):
        gone.append(registry.delete_version_files(registry.RELEASE_MODEL, version))
    for path in (home / "releases" / f"v{version}",
                 home / "cache" / "releases" / f"{registry.RELEASE_MODEL}-v{version}"):
        if path.exists():
            shutil.rmtree(path)
            gone.append(str(path.relative_to(home)))
    return gone
