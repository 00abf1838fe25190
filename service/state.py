"""Every piece of application state, as typed `web.AppKey`s, in one place."""

from __future__ import annotations

from aiohttp import web

from .apikeys import KeyStore
from .index_holder import IndexHolder
from .inflight import InFlight
from .metrics import Metrics
from .ratelimit import RateLimiter
from .settings import Settings

SETTINGS = web.AppKey("settings", Settings)
INDEX = web.AppKey("index", IndexHolder)
KEYS = web.AppKey("keys", KeyStore)
ANON_LIMITER = web.AppKey("anon_limiter", RateLimiter)
KEY_LIMITER = web.AppKey("key_limiter", RateLimiter)
METRICS = web.AppKey("metrics", Metrics)
INFLIGHT = web.AppKey("inflight", InFlight)
