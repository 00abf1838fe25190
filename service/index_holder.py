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
from pathlib import Path

from indexer.fingerprint import Fingerprinter
from indexer.generation import CURRENT, IndexNotFound, current_generation
from indexer.lookup import Checker
from indexer.reader import IndexError_, IndexReader, KeyMismatch

from .errors import NotReady
from .metrics import Metrics

__all__ = ["IndexHolder"]

log = logging.getLogger("exposure.index")


class IndexHolder:
    def __init__(self, index_dir: Path, fingerprinter: Fingerprinter, metrics: Metrics) -> None:
        self.index_dir = index_dir
        self.fingerprinter = fingerprinter
        self.metrics = metrics
        self._checker: Checker | None = None
        self._link: str | None = None
        self.last_error: str | None = None
        self.refused: str | None = None  # the link target that failed, not retried
        self.loaded_at: float | None = None

    @property
    def checker(self) -> Checker:
        if self._checker is None:
            raise NotReady(
                "No index is loaded yet: " + (self.last_error or "waiting for one to be published.")
            )
        return self._checker

    @property
    def ready(self) -> bool:
        return self._checker is not None

    def _read_link(self) -> str | None:
        try:
            return os.readlink(self.index_dir / CURRENT)
        except OSError:
            return None

    def _open(self) -> Checker:
        reader = IndexReader(current_generation(self.index_dir), self.fingerprinter, verify=True)
        return Checker(reader)

    def load_initial(self) -> None:
        """Blocking first load. A wrong pepper raises KeyMismatch: refuse to start."""
        link = self._read_link()
        if link is None:
            self.last_error = f"no index published at {self.index_dir}"
            log.warning("no index yet", extra={"index_dir": str(self.index_dir)})
            return
        try:
            self._install(self._open(), link)
        except KeyMismatch:
            raise
        except (IndexError_, IndexNotFound, OSError) as exc:
            self._refuse(link, exc)

    async def refresh(self) -> bool:
        """Swap in a newly published generation; True when one was swapped in."""
        link = self._read_link()
        if link is None or link == self._link or link == self.refused:
            return False
        loop = asyncio.get_running_loop()
        try:
            checker = await loop.run_in_executor(None, self._open)
        except (IndexError_, IndexNotFound, OSError) as exc:
            self._refuse(link, exc)
            return False
        self._install(checker, link)
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception:  # the watcher must outlive any single bad generation
                log.exception("index refresh failed")

    def _install(self, checker: Checker, link: str) -> None:
        previous = self._checker
        self._checker, self._link = checker, link
        self.last_error = self.refused = None
        self.loaded_at = time.time()
        reader = checker.reader
        if previous is not None:
            self.metrics.index_info.remove(previous.reader.generation)
        self.metrics.index_info.labels(reader.generation).set(1)
        self.metrics.index_fingerprints.set(reader.fingerprint_count)
        self.metrics.index_rows.set(int(reader.manifest["totals"]["rows"]))
        self.metrics.index_loaded_timestamp.set(self.loaded_at)
        self.metrics.ready.set(1)
        log.info("index loaded", extra={"generation": reader.generation,
                                        "fingerprints": reader.fingerprint_count})

    def _refuse(self, link: str, exc: Exception) -> None:
        self.refused = link
        self.last_error = f"generation {link} refused: {exc}"
        self.metrics.index_swap_failures.inc()
        log.error("index generation refused", extra={"generation": link, "reason": str(exc)})
