"""The application factory: `create_app(settings) -> web.Application`.

No work happens at import time. Tests, the CLI and any process manager build the
app through this function; resources are opened in `cleanup_ctx` generators (the
index and its watcher, the key store) so they are closed in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from indexer.core.fingerprint import Fingerprinter, load_pepper, resolve_pepper_file
from service.errors import FeatureOff
from service.middleware import make_middleware, on_prepare
from service.resources.apikeys import KeyStoreError
from service.resources.index_holder import IndexHolder
from service.resources.inflight import InFlight
from service.resources.keystore import describe_location, open_key_store
from service.resources.logs import flush_logs
from service.resources.metrics import Metrics
from service.resources.private import EVALUATE_THREADS, PrivateLookups, oprf_key
from service.resources.ratelimit import RateLimiter
from service.settings import Settings
from service.state import (
    ANON_LIMITER,
    INDEX,
    INFLIGHT,
    KEY_LIMITER,
    KEYS,
    METRICS,
    PRIVATE,
    SETTINGS,
)
from service.views import api, batch, form, private

__all__ = ["create_app"]

log = logging.getLogger("exposure.app")


async def _index_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pepper = load_pepper(resolve_pepper_file(settings.pepper_file))
    holder = IndexHolder(settings.index_dir, Fingerprinter(pepper), app[METRICS],
                         describe=api.sources_document)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, holder.load_initial)
    app[INDEX] = holder
    watcher = asyncio.create_task(holder.watch(settings.index_poll_seconds))
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher


async def _keys_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = await asyncio.get_running_loop().run_in_executor(None, functools.partial(
        open_key_store, settings.keys_db, refresh_seconds=settings.keys_refresh_seconds))
    app[KEYS] = store
    metrics = app[METRICS]
    loop = asyncio.get_running_loop()

    async def flush_periodically() -> None:
        while True:
            await asyncio.sleep(settings.usage_flush_seconds)
            # A commit (an fsync, or a wait of up to busy_timeout for another process's
            # write lock) on the event loop would stall every request: in a thread. The
            # counts are taken here, on the loop that makes them.
            rows = store.take_usage()
            write = loop.run_in_executor(None, store.write_usage, rows)
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                # Stopping: the write runs on in its thread. Waited for here, so that
                # close() writes what is left after it, never before it (close() could
                # otherwise take the lock first, and these rows land after the store
                # is closed, on a connection of their own, or never).
                try:
                    await write
                except (sqlite3.Error, KeyStoreError):
                    store.put_back_usage(rows)  # close() writes them
                raise
            except (sqlite3.Error, KeyStoreError) as exc:
                # One line, counted: a read-only or vanished store must not fill the log
                # with tracebacks every five seconds, nor lose usage unseen.
                metrics.key_usage_write_failures.inc()
                log.error("usage not written; retrying at the next flush",
                          extra={"error": type(exc).__name__, "reason": str(exc)})
                store.put_back_usage(rows)
            if await loop.run_in_executor(None, store.reopen_if_replaced):
                log.warning("key store replaced: reopened",
                            extra={"store": describe_location(settings.keys_db)})

    flusher = asyncio.create_task(flush_periodically())
    yield
    flusher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await flusher
    # The flusher has waited for a write it had started (see above); close() writes
    # what is left.
    try:
        await loop.run_in_executor(None, store.close)
    except sqlite3.Error as exc:
        metrics.key_usage_write_failures.inc()
        log.error("usage not written at stop: lost",
                  extra={"error": type(exc).__name__, "reason": str(exc)})


async def _private_ctx(app: web.Application) -> AsyncIterator[None]:
    """The OPRF key and the private part of the generation the index holder serves."""
    key = oprf_key(app[SETTINGS])
    if key is None:
        log.info("private lookups disabled: no OPRF key file")
    executor = ThreadPoolExecutor(EVALUATE_THREADS, thread_name_prefix="oprf")
    lookups = PrivateLookups(key, executor)
    app[PRIVATE] = lookups
    holder = app[INDEX]
    if key is not None and holder.ready:
        with contextlib.suppress(FeatureOff):  # logged by PrivateLookups; the routes say why
            await lookups.index_for(holder.checker.reader.path)
    yield
    executor.shutdown(wait=False, cancel_futures=True)


async def _logs_ctx(app: web.Application) -> AsyncIterator[None]:
    """The access lines still waiting in memory are written when the app stops."""
    yield
    flush_logs()


def create_app(settings: Settings) -> web.Application:
    metrics, inflight = Metrics(), InFlight()
    app = web.Application(middlewares=[make_middleware(settings, metrics, inflight)],
                          client_max_size=settings.max_check_bytes)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[INFLIGHT] = inflight
    app[ANON_LIMITER] = RateLimiter(settings.anon_rate, settings.anon_burst)
    app[KEY_LIMITER] = RateLimiter(0, 0)  # per-key rates come with each key
    app.cleanup_ctx.append(_logs_ctx)  # first in, last out: after every other cleanup
    app.cleanup_ctx.append(_keys_ctx)
    app.cleanup_ctx.append(_index_ctx)
    app.on_response_prepare.append(on_prepare)
    app.add_routes(api.routes)
    app.add_routes(batch.routes)
    app.cleanup_ctx.append(_private_ctx)  # after the index: it follows its generation
    app.add_routes(private.routes)
    form.setup(app)
    return app
