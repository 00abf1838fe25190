"""Who is asking: the client address (behind trusted proxies) and the API key.

These decide which rate limit a request spends. The Authorization header's token is
only ever hashed and compared (service.resources.apikeys); it is never logged.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence

from aiohttp import web

from service.errors import RateLimited, Unauthorized
from service.resources.apikeys import ApiKey
from service.resources.metrics import route_label
from service.settings import Network
from service.state import ANON_LIMITER, KEY_LIMITER, KEYS, METRICS, SETTINGS

__all__ = ["admit", "authenticate", "came_over_tls", "client_address", "limit_key",
           "spend"]


def client_address(request: web.Request, trusted: Sequence[Network]) -> str:
    """The peer address; behind a trusted proxy, the first untrusted hop of X-Forwarded-For."""
    peer = request.remote or "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded = request.headers.getall("X-Forwarded-For", [])
    hops = [hop.strip() for header in forwarded for hop in header.split(",") if hop.strip()]
    # Walk from the nearest hop: the first one our proxies did not add is the client.
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop if _is_ip(hop) else peer
    return hops[0] if hops and _is_ip(hops[0]) else peer


def came_over_tls(request: web.Request) -> bool:
    """TLS to us, or TLS to a trusted proxy that says so in X-Forwarded-Proto."""
    if request.secure:
        return True
    trusted = request.app[SETTINGS].trusted_proxies
    if not trusted or not _is_trusted(request.remote or "", trusted):
        return False
    return request.headers.get("X-Forwarded-Proto", "").strip().lower() == "https"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Use 'Authorization: Bearer <API key>'.")
    return token.strip()


def authenticate(request: web.Request, *, required: bool) -> ApiKey | None:
    token = bearer_token(request)
    if token is None:
        if required:
            raise Unauthorized("This route needs an API key: 'Authorization: Bearer <key>'.")
        return None
    key = request.app[KEYS].authenticate(token)
    if key is None:
        raise Unauthorized("Unknown or revoked API key.")
    return key


def take_from_key(request: web.Request, key: ApiKey, cost: float) -> float:
    """Take `cost` units from the key's own bucket (its rate, a minute's worth of burst);
    the seconds to wait before it could pay, 0 when paid. The one place a key is charged."""
    return request.app[KEY_LIMITER].take(
        f"key:{key.id}", cost, rate_per_minute=key.rate_per_minute,
        burst=max(1, key.rate_per_minute),
    )


def limit_key(address: str, ipv6_prefix: int) -> str:
    """The client a limit counts: an IPv4 address as it is, an IPv6 address as its
    network of `ipv6_prefix` bits (a /64 is what one customer usually gets: counting
    each of its addresses apart would leave it unlimited), an IPv4-mapped one as IPv4."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))


def spend(request: web.Request, key: ApiKey | None, cost: float = 1.0) -> None:
    """Spend `cost` units of the caller's limit (the key's, else the client's) or 429."""
    if key is not None:
        wait = take_from_key(request, key, cost)
        burst, rate = max(1.0, float(key.rate_per_minute)), float(key.rate_per_minute)
    else:
        limiter = request.app[ANON_LIMITER]
        if limiter.unlimited:
            return  # `--anon-rate 0`: nothing to count, so no address to work out
        settings = request.app[SETTINGS]
        client = limit_key(client_address(request, settings.trusted_proxies),
                           settings.ipv6_prefix)
        wait = limiter.take(client, cost)
        burst, rate = limiter.burst, limiter.rate_per_second * 60.0
    if wait > 0:
        request.app[METRICS].rate_limited.labels(route_label(request)).inc()
        if math.isinf(wait):
            raise RateLimited.beyond_burst(cost, burst, 60.0 * burst / rate)
        raise RateLimited(wait)


def admit(request: web.Request) -> ApiKey | None:
    """Let one lookup through: spend a unit of the key's limit, else of the address's.

    A request with a wrong key spends the address's unit before it is refused, so a
    flood of made-up keys is limited like any anonymous flood. A key's lookups are
    counted in its usage (counts only).
    """
    try:
        key = authenticate(request, required=False)
    except Unauthorized:
        spend(request, None)
        raise
    spend(request, key)
    if key is not None:
        request.app[KEYS].record_usage(key.id, requests=1, records=1)
    return key
