"""Where the served release comes from, and how a new one replaces it without a restart.

A registry alias (`production`) is polled; when it moves, the new version's checkpoint is
downloaded in the watcher's thread, then handed to the engine, which loads it and swaps it in
between two batches (never mid-request). While the alias points nowhere (a withdrawal purged
the release it named) the loaded model keeps serving, with the withdrawn expert masked by the
deny-list.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Self

from components.errors import CheckpointError, ConfigError
from flows.serving.engine import ReleaseSource
from flows.tracking import registry

log = logging.getLogger(__name__)


def registry_release(version: int) -> ReleaseSource:
    """Release `version`, its checkpoint downloaded (once, under FLEXO_HOME)."""
    from flows.tracking.releases import download_checkpoint

    return ReleaseSource(directory=download_checkpoint(version), name=f"v{version}",
                         model_id=f"{registry.RELEASE_MODEL}-v{version}")


def resolve_release(release: str) -> int:
    """A version number, or the version an alias points at now."""
    if release.isdigit():
        registry.release_version(int(release))  # refuses an unknown version, naming it
        return int(release)
    found = registry.release_alias(release)
    if found is None:
        raise ConfigError(f"no release holds the alias '{release}'; see `flexo release status`, "
                          f"or serve a version with --release N")
    return found.version


def directory_release(directory: Path) -> ReleaseSource:
    if not (Path(directory) / "config.json").is_file():
        raise CheckpointError(f"no model at {directory}; pass a merged model or anchor directory")
    name = Path(directory).resolve().name
    return ReleaseSource(directory=Path(directory).resolve(), name=name, model_id=name)


class AliasWatch:
    """Polls `alias` every `every_s` seconds in a thread; when it moves, the new version is
    downloaded there and handed to `offer`."""

    def __init__(self, alias: str, version: int, offer: Callable[[ReleaseSource], None],
                 every_s: float = 5.0):
        self.alias, self.version, self.offer, self.every_s = alias, version, offer, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flexo-alias-watch", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def check(self) -> None:
        found = registry.release_alias(self.alias)
        if found is None or found.version == self.version:
            return
        log.info("%s moved to v%s; loading it", self.alias, found.version)
        source = registry_release(found.version)
        self.version = found.version
        self.offer(source)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.check()
            except Exception:  # a registry hiccup: keep serving what is loaded, try again
                log.warning("checking alias %s failed; serving on", self.alias, exc_info=True)
