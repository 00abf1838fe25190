"""The generation being served, and the watcher that swaps in a newly published one.

The holder follows `INDEX_DIR/current`. When the link changes, the new generation is
opened and verified off the event loop; only then does `checker` point at it, in
one assignment, so a request sees either the old generation or the new one. A request
already running keeps its own reference to the old checker, whose memory maps are
released when the last such reference goes. A generation that fails verification is
refused: the old one keeps serving, and the refusal shows in /readyz and metrics.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.core.fingerprint import Fingerprinter
from indexer.index.generation import CURRENT, IndexNotFound, current_generation
from indexer.index.lookup import Checker
from indexer.index.reader import IndexError_, IndexReader, KeyMismatch
from service.errors import NotReady
from service.resources.metrics import Metrics

__all__ = ["IndexHolder"]

log = logging.getLogger("exposure.index")


Describe = Callable[[IndexReader], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Opened:
    """A verified generation and what the service derives from its manifest, computed
    once when it is opened: a manifest whose fields cannot be read is refused then,
    instead of failing every request that reads them."""

    checker: Checker
    sources: dict[str, Any]
    rows: int


class IndexHolder:
    def __init__(self, index_dir: Path, fingerprinter: Fingerprinter, metrics: Metrics,
                 describe: Describe | None = None) -> None:
        self.index_dir = index_dir
        self.fingerprinter = fingerprinter
        self.metrics = metrics
        self._describe = describe
        self._checker: Checker | None = None
        self._sources: dict[str, Any] = {}
        self._link: str | None = None
        self.last_error: str | None = None
        self.refused: str | None = None  # the link target that failed, not retried
        self.loaded_at: float | None = None

    @property
    def checker(self) -> Checker:
        if self._checker is None:
            # Why is for /readyz and the log: an answer to anyone says only that.
            raise NotReady("No index is loaded yet: this service is not ready.")
        return self._checker

    @property
    def sources(self) -> dict[str, Any]:
        """The `describe` document of the generation being served (`GET /v1/sources`)."""
        self.checker  # noqa: B018 - NotReady (503) when none is loaded
        return self._sources

    @property
    def ready(self) -> bool:
        return self._checker is not None

    def _read_link(self) -> str | None:
        try:
            return os.readlink(self.index_dir / CURRENT)
        except OSError:
            return None

    def _open(self) -> _Opened:
        reader = IndexReader(current_generation(self.index_dir), self.fingerprinter, verify=True)
        try:
            sources = self._describe(reader) if self._describe is not None else {}
            return _Opened(Checker(reader), sources, int(reader.manifest["totals"]["rows"]))
        except Exception:
            reader.close()
            raise

    def load_initial(self) -> None:
        """Blocking first load. A wrong pepper raises KeyMismatch: refuse to start."""
        link = self._read_link()
        if link is None:
            self.last_error = "no index published yet"
            log.warning("no index yet", extra={"index_dir": str(self.index_dir)})
            return
        try:
            self._install(self._open(), link)
        except KeyMismatch:
            raise
        except Exception as exc:  # any unusable generation is refused, see _refuse
            self._refuse(link, exc)

    async def refresh(self) -> bool:
        """Swap in a newly published generation; True when one was swapped in."""
        link = self._read_link()
        if link is None or link == self._link or link == self.refused:
            return False
        loop = asyncio.get_running_loop()
        try:
            opened = await loop.run_in_executor(None, self._open)
        except Exception as exc:  # any unusable generation is refused, see _refuse
            self._refuse(link, exc)
            return False
        self._install(opened, link)
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception:  # the watcher must outlive any single bad generation
                log.exception("index refresh failed")

    def _install(self, opened: _Opened, link: str) -> None:
        previous = self._checker
        # No await from here on: a request sees the old generation or the new one.
        self._checker, self._sources, self._link = opened.checker, opened.sources, link
        self.last_error = self.refused = None
        self.loaded_at = time.time()
        reader = opened.checker.reader
        if previous is not None:
            self.metrics.index_info.remove(previous.reader.generation)
        self.metrics.index_info.labels(reader.generation).set(1)
        self.metrics.index_fingerprints.set(reader.fingerprint_count)
        self.metrics.index_rows.set(opened.rows)
        self.metrics.index_loaded_timestamp.set(self.loaded_at)
        self.metrics.ready.set(1)
        log.info("index loaded", extra={"generation": reader.generation,
                                        "fingerprints": reader.fingerprint_count})

    def _without_paths(self, reason: str) -> str:
        """`reason` with the index directory written INDEX_DIR: /readyz says why a
        generation was refused, not where the index lives (the log has it all)."""
        for spelling in {str(self.index_dir.resolve()), str(self.index_dir)}:
            reason = reason.replace(spelling, "INDEX_DIR")
        return reason

    def _refuse(self, link: str, exc: Exception) -> None:
        # Not only the reader's own errors: a manifest that is valid JSON but of the
        # wrong shape can fail with KeyError or TypeError while the generation opens.
        # Whatever the failure, the generation is refused once (not retried at every
        # poll) and the one being served stays.
        reason = str(exc) if isinstance(exc, IndexError_ | IndexNotFound | OSError) \
            else f"unreadable ({type(exc).__name__}: {exc})"
        self.refused = link
        self.last_error = f"generation {link} refused: {self._without_paths(reason)}"
        self.metrics.index_swap_failures.inc()
        log.error("index generation refused", extra={"generation": link, "reason": reason})
