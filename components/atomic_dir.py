"""Write a directory all at once: build it beside its final place, then rename.

A crash, an error or Ctrl-C mid-write leaves no half-written output where readers look for it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from components.errors import OutputExistsError


def check_output_dir(out: Path) -> Path:
    """Refuse an output path that exists and is not an empty directory, before any work starts."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExistsError(f"output {out} already exists and is not empty; "
                                f"choose a new path or remove it first")
    return out


@contextmanager
def atomic_output_dir(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it becomes `out`, on failure it vanishes."""
    out = check_output_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
