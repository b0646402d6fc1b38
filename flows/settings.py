"""Where flexo keeps its state when nothing else is configured (DESIGN §3, embedded default)."""

from __future__ import annotations

import os
from pathlib import Path


def flexo_home() -> Path:
    """`FLEXO_HOME`, default `./.flexo`; read at call time so tests and users can point it away."""
    return Path(os.environ.get("FLEXO_HOME", ".flexo")).resolve()
