"""A file's parsed contents, parsed again only when the file changed.

Servers and loaded runtimes consult small files (the deny-list, the policy) on every request or
forward pass; one `stat` tells whether the last parse still holds (an atomic replace changes the
inode, an edit the mtime or size), so a change takes effect on the next call without re-reading
an unchanged file every time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class ChangedFile(Generic[T]):
    """`memo(path)`: `parse(path)`, reused while the file at `path` is unchanged. A missing file
    is parsed every time (the parser decides what absence means)."""

    def __init__(self, parse: Callable[[Path], T]):
        self.parse = parse
        self._seen: dict[Path, tuple[tuple[int, int, int], T]] = {}

    def __call__(self, path: Path) -> T:
        path = Path(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._seen.pop(path, None)
            return self.parse(path)
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        seen = self._seen.get(path)
        if seen is not None and seen[0] == stamp:
            return seen[1]
        value = self.parse(path)
        self._seen[path] = (stamp, value)
        return value
