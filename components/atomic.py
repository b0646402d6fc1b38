"""Outputs appear whole or not at all: build beside the final place, then rename.

A crash, an error or Ctrl-C mid-write leaves no half-written file or directory where readers look.
Every writer that replaces something in place goes through `atomic_file` (or `atomic_write`);
every new directory through `atomic_output_dir`.
"""

from __future__ import annotations

import os
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


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a hidden sibling path to write (a file or a symlink); on success it replaces `path`
    in one `os.replace`, so readers see the old or the new content, never a mix or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to `path` atomically; returns `path`."""
    with atomic_file(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return Path(path)


@contextmanager
def removed_on_failure(directory: Path) -> Iterator[Path]:
    """A new working directory that the block fills and its caller later renames or keeps; if
    the block fails, the directory goes, so nothing half-built stays behind."""
    directory = check_output_dir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        yield directory
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `lock_path` (created if missing): read-modify-write
    of a shared file by two processes at once, one after the other."""
    import fcntl

    Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
