"""Every piece of application state, as typed `web.AppKey`s, in one place."""

from __future__ import annotations

from aiohttp import web

from service.resources.index_holder import IndexHolder
from service.resources.inflight import InFlight
from service.resources.keystore import ApiKeyStore
from service.resources.metrics import Metrics
from service.resources.private import PrivateLookups
from service.resources.ratelimit import RateLimiter
from service.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
INDEX = web.AppKey("index", IndexHolder)
KEYS: web.AppKey[ApiKeyStore] = web.AppKey("keys")  # SQLite or PostgreSQL
ANON_LIMITER = web.AppKey("anon_limiter", RateLimiter)
KEY_LIMITER = web.AppKey("key_limiter", RateLimiter)
METRICS = web.AppKey("metrics", Metrics)
INFLIGHT = web.AppKey("inflight", InFlight)
PRIVATE = web.AppKey("private_lookups", PrivateLookups)
