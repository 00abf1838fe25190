"""Service settings: one frozen object built by the CLI or by tests."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Settings:
    index_dir: Path = Path("var/index")
    pepper_file: Path | None = None  # None: $EXPOSURE_PEPPER_FILE
    keys_db: Path | str = Path("var/keys.sqlite")  # an SQLite path or a postgresql:// URL
    anon_rate: float = 30.0  # lookups per minute per client address; 0 = unlimited
    anon_burst: int = 10
    trusted_proxies: tuple[Network, ...] = ()
    # An IPv6 client is limited as its /ipv6_prefix network (service.access.limit_key).
    ipv6_prefix: int = 64
    max_check_bytes: int = 16 * 1024
    max_batch_bytes: int = 1 << 30
    max_batch_line_bytes: int = 64 * 1024
    # Lines per vectorised lookup. A 256 KiB read of the body holds ~2,400 member lines:
    # 4096 checks each read in one go (numpy's per-call cost is paid per chunk).
    batch_chunk_lines: int = 4096
    # A slow client must not hold a connection (and its memory) for ever. The keep-alive
    # timeout also bounds how long a connection may take to send a complete request head
    # (aiohttp closes a connection whose head is still incomplete when it fires); 75 s
    # outlives the 60 s idle upstream connections of nginx, so the proxy never reuses a
    # connection we are closing. `body_timeout` bounds a small body as a whole (every
    # route but the bulk one) and, for the bulk route, each wait for the next bytes.
    keepalive_timeout: float = 75.0
    body_timeout: float = 60.0
    index_poll_seconds: float = 2.0
    usage_flush_seconds: float = 5.0
    # PostgreSQL key store: the poll that backs up its change notifications.
    keys_refresh_seconds: float = 1.0
    oprf_key_file: Path | None = None
