"""The code version recorded with everything flexo writes."""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def code_version() -> str:
    try:
        base = version("flexo")
    except PackageNotFoundError:
        base = "0+unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip()
        return f"{base}+g{sha}"
    except (OSError, subprocess.SubprocessError):
        return base
