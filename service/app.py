"""The application factory: `create_app(settings) -> web.Application`.

No work happens at import time. Tests, the CLI and any process manager build the
app through this function; resources are opened in `cleanup_ctx` generators (the
index and its watcher, the key store) so they are closed in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from indexer.fingerprint import Fingerprinter, load_pepper, resolve_pepper_file

from . import api, batch, form, private
from .apikeys import KeyStore
from .index_holder import IndexHolder
from .inflight import InFlight
from .metrics import Metrics
from .middleware import middleware, on_prepare
from .ratelimit import RateLimiter
from .settings import Settings
from .state import ANON_LIMITER, INDEX, INFLIGHT, KEY_LIMITER, KEYS, METRICS, SETTINGS

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
    store = KeyStore(settings.keys_db)
    app[KEYS] = store

    async def flush_periodically() -> None:
        while True:
            await asyncio.sleep(settings.usage_flush_seconds)
            store.flush_usage()

    flusher = asyncio.create_task(flush_periodically())
    yield
    flusher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await flusher
    store.close()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[middleware], client_max_size=settings.max_check_bytes)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[INFLIGHT] = InFlight()
    app[ANON_LIMITER] = RateLimiter(settings.anon_rate, settings.anon_burst)
    app[KEY_LIMITER] = RateLimiter(0, 0)  # per-key rates come with each key
    app.cleanup_ctx.append(_keys_ctx)
    app.cleanup_ctx.append(_index_ctx)
    app.on_response_prepare.append(on_prepare)
    app.add_routes(api.routes)
    app.add_routes(batch.routes)
    form.setup(app)
    private.setup(app, settings)
    return app
