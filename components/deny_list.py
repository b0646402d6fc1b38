"""The deny-list: experts that no path may use from the moment their withdrawal is requested.

One JSON file (flows keep it under FLEXO_HOME), replaced atomically on each change. A loaded
runtime watches it (`denied_names`: one `stat` per forward pass, a re-read only when the file
changed), so a withdrawal takes effect on the next call, with no reload and no restart. An
unreadable deny-list fails closed: nothing runs until it is fixed.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from components.atomic import atomic_write
from components.changed_file import ChangedFile
from components.errors import IntegrityError

DENY_LIST_FILE = "deny-list.json"


class Denial(BaseModel):
    model_config = ConfigDict(frozen=True)

    since: str  # when the withdrawal was requested
    by: str  # who asked


class DenyList(BaseModel):
    model_config = ConfigDict(frozen=True)

    denied: dict[str, Denial] = {}  # expert (contributor id) -> the request

    @classmethod
    def read(cls, path: Path) -> DenyList:
        """The list at `path`; empty when there is no file."""
        try:
            return cls.model_validate_json(Path(path).read_bytes())
        except FileNotFoundError:
            return cls()
        except ValidationError as e:
            raise IntegrityError(f"deny-list {path} is unreadable ({e.errors()[0]['msg']}); "
                                 f"restore it from the ledger's withdrawal entries before any "
                                 f"model is used") from None

    def deny(self, expert: str, since: str, by: str) -> DenyList:
        """This list with `expert` on it (an expert already on it keeps its first request)."""
        if expert in self.denied:
            return self
        return DenyList(denied={**self.denied, expert: Denial(since=since, by=by)})

    def write(self, path: Path) -> None:
        atomic_write(Path(path), self.model_dump_json(indent=2) + "\n")


# the denied names at a path, re-read only when the file changed (components/changed_file.py)
denied_names: ChangedFile[frozenset[str]] = ChangedFile(
    lambda path: frozenset(DenyList.read(path).denied))
