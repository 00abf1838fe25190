"""The private-lookup resource: the OPRF key and the private part being served.

The private part followed is the one of the generation the main index holder serves,
so both kinds of lookup always answer from the same generation. Never let the OPRF
key reach a log or a message.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Final

from indexer.index.generation import IndexNotFound, current_generation
from indexer.private import oprf
from indexer.private.keys import OPRF_KEY_ENV, OprfKeyError, load_oprf_key
from indexer.private.store import NoPrivatePart, PrivateIndex, PrivateIndexError
from service.errors import FeatureOff
from service.settings import Settings

log = logging.getLogger("exposure.private")

EVALUATE_THREADS: Final = 2

_UNAVAILABLE: Final = "Private lookups are not available for the index being served."



class PrivateLookups:
    """The OPRF key and the private part of the generation being served.

    The private part is opened lazily, the first time a request meets a generation
    (and once at start-up), off the event loop; a generation without one, or built
    under another OPRF key, is remembered as refused and answers 404 (FeatureOff).
    """

    def __init__(self, oprf_key: bytes | None, executor: Executor | None = None) -> None:
        self._key = oprf_key
        self.key_id = oprf.key_id(oprf_key) if oprf_key is not None else None
        self.executor = executor
        self._loaded: tuple[Path, PrivateIndex] | None = None
        self._refused: tuple[Path, str] | None = None
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self._key is not None

    @property
    def key(self) -> bytes:
        if self._key is None:
            raise FeatureOff("Private lookups are not enabled on this service.")
        return self._key

    async def index_for(self, generation: Path) -> PrivateIndex:
        """The private part of `generation`, opened once; FeatureOff (404) if unusable."""
        if self._key is None:
            raise FeatureOff("Private lookups are not enabled on this service.")
        index = self._known(generation)
        if index is None:
            async with self._lock:  # one opening per generation, however many requests
                index = self._known(generation)
                if index is None:
                    await self._open(generation)
                    index = self._known(generation)
        if index is None:
            raise FeatureOff(_UNAVAILABLE)
        return index

    def _known(self, generation: Path) -> PrivateIndex | None:
        """The opened part of `generation`; None if never tried; FeatureOff if refused."""
        loaded, refused = self._loaded, self._refused
        if loaded is not None and loaded[0] == generation:
            return loaded[1]
        if refused is not None and refused[0] == generation:
            raise FeatureOff(_UNAVAILABLE)
        return None

    async def _open(self, generation: Path) -> None:
        loop = asyncio.get_running_loop()
        try:
            index = await loop.run_in_executor(self.executor, self._open_blocking, generation)
        except PrivateIndexError as exc:
            self._refused = (generation, str(exc))
            level = logging.INFO if isinstance(exc, NoPrivatePart) else logging.ERROR
            log.log(level, "private part refused",
                    extra={"generation": generation.name, "reason": str(exc)})
            return
        self._loaded, self._refused = (generation, index), None
        log.info("private part loaded", extra={
            "generation": generation.name, "bucket_bits": index.params.bucket_bits,
            "bucket_size": index.params.bucket_size,
        })

    def _open_blocking(self, generation: Path) -> PrivateIndex:
        index = PrivateIndex(generation, verify=True)
        if index.params.key_id != self.key_id:
            index.close()
            raise PrivateIndexError(
                f"the private part of {generation.name} was built with another OPRF key "
                f"(key id {index.params.key_id}, this service's is {self.key_id}): start "
                "with the OPRF key file used for the build, or rebuild with --private"
            )
        return index



def _key_file(settings: Settings) -> Path | None:
    chosen = settings.oprf_key_file or os.environ.get(OPRF_KEY_ENV)
    return Path(chosen) if chosen else None



def oprf_key(settings: Settings) -> bytes | None:
    """The configured OPRF key; None when none is configured. A configured but unreadable
    or invalid key raises OprfKeyError: an operator who asked for private lookups should
    not get a silently switched-off feature."""
    path = _key_file(settings)
    return load_oprf_key(path) if path is not None else None


def precheck(settings: Settings) -> None:
    """For `exposure-serve` before it forks: a bad OPRF key, or one that is not the
    build's, stops the start with a clear message (OprfKeyError)."""
    path = _key_file(settings)
    if path is None:
        return
    key_id = oprf.key_id(load_oprf_key(path))
    try:
        generation = current_generation(settings.index_dir)
        index = PrivateIndex(generation, verify=False)
    except (IndexNotFound, PrivateIndexError):
        return  # no index or no private part yet: the routes will say 404
    built_with = index.params.key_id
    index.close()
    if built_with != key_id:
        raise OprfKeyError(
            f"the OPRF key file {path} (key id {key_id}) is not the one the index "
            f"{generation.name} was built with (key id {built_with})"
        )

