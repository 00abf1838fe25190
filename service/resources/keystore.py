"""Which key store: SQLite for one host, PostgreSQL for replicas on several hosts.

`--keys-db` (or EXPOSURE_KEYS_DB) is a `postgresql://` URL or an SQLite path; both
backends keep the same keys, hashes, revocation and usage (tests/test_keystores.py runs one
suite against both). The app and the CLI see only `ApiKeyStore`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from service.resources.apikeys import DEFAULT_KEY_RATE, ApiKey, KeyStore
from service.resources.keyusage import UsageRow

__all__ = ["ApiKeyStore", "KeysLocation", "describe_location", "is_postgres_url",
           "open_key_store"]

KeysLocation = Path | str  # an SQLite path, or a postgresql:// URL


class ApiKeyStore(Protocol):
    def create(self, name: str, rate_per_minute: int = DEFAULT_KEY_RATE
               ) -> tuple[ApiKey, str]: ...
    def all_keys(self) -> list[tuple[ApiKey, int, int]]: ...
    def revoke(self, key_id: int) -> bool: ...
    def authenticate(self, token: str) -> ApiKey | None: ...
    def record_usage(self, key_id: int, *, requests: int = 0, records: int = 0) -> None: ...
    def flush_usage(self) -> None: ...
    def take_usage(self) -> list[UsageRow]: ...
    def put_back_usage(self, rows: list[UsageRow]) -> None: ...
    def write_usage(self, rows: list[UsageRow]) -> None: ...
    def usage(self, key_id: int) -> list[tuple[str, int, int]]: ...
    def migrate(self) -> int: ...
    def health(self) -> str | None: ...  # what /readyz must say, if anything
    def reopen_if_replaced(self) -> bool: ...  # blocking; True when reopened
    def close(self) -> None: ...


def is_postgres_url(location: object) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def describe_location(location: KeysLocation) -> str:
    """For messages: a path as is, a URL without its credentials."""
    if is_postgres_url(location):
        from service.resources.apikeys_postgres import describe

        return describe(str(location))
    return str(location)


def open_key_store(location: KeysLocation, *, watch: bool = True,
                   refresh_seconds: float | None = None) -> ApiKeyStore:
    """The store at `location`; its schema created or migrated. `watch=False` (the CLI)
    skips the PostgreSQL store's refresh thread, which only a server needs;
    `refresh_seconds` is that thread's poll (default REFRESH_SECONDS)."""
    if is_postgres_url(location):
        # Imported here: psycopg is loaded only by deployments that use it.
        from service.resources.apikeys_postgres import REFRESH_SECONDS, PostgresKeyStore

        return PostgresKeyStore(str(location), watch=watch,
                                refresh_seconds=REFRESH_SECONDS if refresh_seconds is None
                                else refresh_seconds)
    return KeyStore(Path(location))
