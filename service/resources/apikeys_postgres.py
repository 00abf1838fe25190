"""API keys in PostgreSQL: the key store that replicas on several hosts share.

The same keys, hashes, revocation and usage accounting as the SQLite store
(service/resources/apikeys.py), behind the same methods; `open_key_store` picks the
backend from `--keys-db` (a `postgresql://` URL, else an SQLite path).

Authentication never waits for the database: each worker holds the live keys in memory
(hash -> key) and a thread of its own brings that copy up to date, reading only the rows
changed since its last read (every insert or update takes a new number from a sequence,
in commit order: see migration 2). The thread reads as soon as the database notifies a
change (LISTEN/NOTIFY: a key created or revoked by `exposure-serve keys ...`, from any
host, is honoured or refused by every replica a few milliseconds after its commit), and
every `refresh_seconds` (1 s) in any case, which bounds the delay should a notification
be lost (docs/operations.md says: within 2 s). When the database cannot be reached, the
last copy keeps serving and the failure is logged once per outage. Usage is written as
on SQLite: counted on the event loop, added in one transaction by `write_usage` in a
worker thread, over its own connection.

The URL may carry a password: it is never logged nor put in an error message (errors
name the database by host and name only). Prefer a password file (`passfile=` or
`PGPASSFILE`) to a password in the URL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

import psycopg
from psycopg import conninfo

from service.resources.apikeys import (
    DEFAULT_KEY_RATE,
    ApiKey,
    KeyStoreError,
    _hash,
    could_be_token,
    new_token,
)
from service.resources.keyusage import UsageCounts, UsageRow

__all__ = ["REFRESH_SECONDS", "SCHEMA_VERSION", "PostgresKeyStore", "describe"]

REFRESH_SECONDS: Final = 1.0
# The watcher looks at `close()` at least this often while it waits for a change.
_WAKE_SECONDS: Final = 0.25
log = logging.getLogger("exposure.keys")

# Each entry brings the schema from the version before it to its own number. Never edit
# a released entry: add one. The service and `keys migrate` apply what is missing, under
# an advisory lock, so that replicas starting together do not race.
_MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: keys and daily usage. Ids come from an identity column and are never reused;
    # `version` orders changes for the replicas' incremental refresh.
    """
    CREATE SEQUENCE exposure_api_keys_version;
    CREATE TABLE exposure_api_keys (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name text NOT NULL CHECK (name <> ''),
        token_sha256 text NOT NULL UNIQUE,
        rate_per_minute integer NOT NULL CHECK (rate_per_minute >= 1),
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz,
        version bigint NOT NULL DEFAULT nextval('exposure_api_keys_version')
    );
    CREATE INDEX exposure_api_keys_by_version ON exposure_api_keys (version);
    CREATE TABLE exposure_usage (
        key_id bigint NOT NULL REFERENCES exposure_api_keys (id),
        day date NOT NULL,
        requests bigint NOT NULL DEFAULT 0,
        records bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (key_id, day)
    );
    """,
    # 2: every change of a key, whoever writes it, (a) takes its version under a lock
    # held until its commit, so that versions are committed in increasing order: a
    # replica that has read version N never misses a smaller one committed later (a
    # revocation that no replica would ever see); (b) notifies the replicas, which read
    # it at once instead of at their next poll.
    """
    CREATE FUNCTION exposure_api_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(1702391916);  -- "expl"; migrations take "expo"
        NEW.version := nextval('exposure_api_keys_version');
        PERFORM pg_notify('exposure_api_keys', '');  -- what the replicas LISTEN to
        RETURN NEW;
    END
    $$;
    CREATE TRIGGER exposure_api_keys_changed BEFORE INSERT OR UPDATE ON exposure_api_keys
        FOR EACH ROW EXECUTE FUNCTION exposure_api_keys_changed();
    """,
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)
_MIGRATION_LOCK: Final = 0x6578706F  # pg_advisory_xact_lock key: "expo"


def _stamp(moment: dt.datetime | None) -> str | None:
    # The SQLite store's format, so that both backends show keys alike.
    return None if moment is None else moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(row: tuple[Any, ...]) -> ApiKey:
    """An ApiKey from (id, name, rate_per_minute, created_at, revoked_at)."""
    key_id, name, rate, created, revoked = row[:5]
    return ApiKey(int(key_id), name, int(rate), _stamp(created) or "", _stamp(revoked))


def describe(url: str) -> str:
    """The database named without credentials, for messages."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "PostgreSQL (unparsable URL)"
    database, host = parts.get("dbname", "?"), parts.get("host", "the local socket")
    return f"PostgreSQL database {database!s} on {host!s}"


class PostgresKeyStore(UsageCounts):
    def __init__(self, url: str, *, refresh_seconds: float = REFRESH_SECONDS,
                 migrate: bool = True, watch: bool = True) -> None:
        super().__init__()
        self.url, self.refresh_seconds = url, refresh_seconds
        self.name = describe(url)
        self._lock = threading.Lock()  # the admin connection
        self._usage_lock = threading.Lock()
        self._live: dict[str, ApiKey] = {}  # token hash -> live key
        self._seen_version = 0
        self._closed = threading.Event()
        self._db = self._connect()
        self._usage_db: psycopg.Connection[Any] | None = None
        self._refresh_db: psycopg.Connection[Any] | None = None
        self._listen_db: psycopg.Connection[Any] | None = None
        try:
            self._usage_db = self._connect()
            if migrate:
                self.migrate()
            if watch:
                self._listen()  # before the first read: no change falls between the two
            self.refresh()
        except BaseException:
            self._close_connections()
            raise
        self._watcher: threading.Thread | None = None
        if watch:
            self._watcher = threading.Thread(target=self._watch, name="keys-refresh",
                                             daemon=True)
            self._watcher.start()

    # ------------------------------------------------------------------ connections

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10,
                                   application_name="exposure-serve")
        except psycopg.Error as exc:
            raise KeyStoreError(f"cannot open the key database ({self.name}): "
                                f"{_reason(exc)}") from None

    @contextlib.contextmanager
    def _admin(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            try:
                yield self._db
            except psycopg.Error as exc:
                if self._db.closed or self._db.broken:
                    self._db = self._connect()
                raise KeyStoreError(f"key database ({self.name}): {_reason(exc)}") from None

    def close(self) -> None:
        self._closed.set()
        if self._watcher is not None:
            self._watcher.join(_WAKE_SECONDS + 15)
        with contextlib.suppress(KeyStoreError):
            self.flush_usage()
        self._close_connections()

    def _close_connections(self) -> None:
        for connection in (self._db, self._usage_db, self._refresh_db, self._listen_db):
            if connection is not None:
                connection.close()

    # ------------------------------------------------------------------ schema

    def migrate(self) -> int:
        """Apply the migrations this database lacks; the schema version after."""
        with self._admin() as db, db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS exposure_schema (version integer NOT NULL)")
            row = db.execute("SELECT max(version) FROM exposure_schema").fetchone()
            current = row[0] if row and row[0] is not None else 0
            if current > SCHEMA_VERSION:
                raise KeyStoreError(
                    f"the key database ({self.name}) has schema version {current}, newer than "
                    f"this exposure-serve knows ({SCHEMA_VERSION}): upgrade exposure-serve")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                db.execute(_MIGRATIONS[version - 1])
                db.execute("INSERT INTO exposure_schema (version) VALUES (%s)", (version,))
        return SCHEMA_VERSION

    # ------------------------------------------------------------------ keys

    def create(self, name: str, rate_per_minute: int = DEFAULT_KEY_RATE) -> tuple[ApiKey, str]:
        """A new key and its token, which is shown once and never stored."""
        token = new_token(name, rate_per_minute)
        with self._admin() as db:
            row = db.execute(
                "INSERT INTO exposure_api_keys (name, token_sha256, rate_per_minute) "
                "VALUES (%s, %s, %s) "
                "RETURNING id, name, rate_per_minute, created_at, revoked_at",
                (name.strip(), _hash(token), rate_per_minute),
            ).fetchone()
        assert row is not None
        return _key(row), token

    def all_keys(self) -> list[tuple[ApiKey, int, int]]:
        """Every key with its total requests and records."""
        with self._admin() as db:
            rows = db.execute(
                "SELECT k.id, k.name, k.rate_per_minute, k.created_at, k.revoked_at, "
                "COALESCE(SUM(u.requests), 0), COALESCE(SUM(u.records), 0) "
                "FROM exposure_api_keys k LEFT JOIN exposure_usage u ON u.key_id = k.id "
                "GROUP BY k.id ORDER BY k.id"
            ).fetchall()
        return [(_key(row), int(row[5]), int(row[6])) for row in rows]

    def revoke(self, key_id: int) -> bool:
        with self._admin() as db:
            cursor = db.execute(
                "UPDATE exposure_api_keys SET revoked_at = now() "
                "WHERE id = %s AND revoked_at IS NULL", (key_id,))
        return cursor.rowcount == 1

    def health(self) -> str | None:
        """Always ready: during an outage of the database the last copy of the keys
        serves (and the outage is logged); failing readiness on every replica at once
        would take the whole service down with it."""
        return None

    def reopen_if_replaced(self) -> bool:
        return False  # a server, not a file: nothing is ever replaced under us

    def authenticate(self, token: str) -> ApiKey | None:
        """The live key behind `token`, or None (unknown or revoked); from memory."""
        if not could_be_token(token):
            return None
        return self._live.get(_hash(token))

    # ------------------------------------------------------------------ refresh

    def refresh(self) -> None:
        """Bring the in-memory copy of the live keys up to date (blocking)."""
        if self._refresh_db is None or self._refresh_db.closed or self._refresh_db.broken:
            self._refresh_db = self._connect()
        try:
            rows = self._refresh_db.execute(
                "SELECT id, name, rate_per_minute, created_at, revoked_at, token_sha256, "
                "version FROM exposure_api_keys WHERE version > %s ORDER BY version",
                (self._seen_version,)).fetchall()
        except psycopg.Error as exc:
            raise KeyStoreError(f"key database ({self.name}): {_reason(exc)}") from None
        if not rows:
            return
        live = dict(self._live)
        for row in rows:
            key, token_sha256, version = _key(row), row[5], row[6]
            if key.revoked_at is None:
                live[token_sha256] = key
            else:
                live.pop(token_sha256, None)
            self._seen_version = max(self._seen_version, version)
        self._live = live  # one assignment: readers see the old or the new dict whole

    def _listen(self) -> None:
        """A connection of its own that only waits for NOTIFYs: one that also ran
        queries would hand the notifications arriving meanwhile to nobody."""
        if self._listen_db is not None:
            self._listen_db.close()
        self._listen_db = self._connect()
        try:
            self._listen_db.execute("LISTEN exposure_api_keys")  # migration 2 notifies
        except psycopg.Error as exc:
            raise KeyStoreError(f"key database ({self.name}): {_reason(exc)}") from None

    def _wait_for_change(self) -> None:
        """Until the database notifies a change, `refresh_seconds` pass, or `close()`.
        A lost connection is opened again (and listened on) before the next read."""
        if self._listen_db is None or self._listen_db.closed or self._listen_db.broken:
            self._listen()
            return
        deadline = time.monotonic() + self.refresh_seconds
        try:
            while not self._closed.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                for _ in self._listen_db.notifies(timeout=min(left, _WAKE_SECONDS),
                                                  stop_after=1):
                    return
        except psycopg.Error as exc:
            raise KeyStoreError(f"key database ({self.name}): {_reason(exc)}") from None

    def _watch(self) -> None:
        failing = False
        while not self._closed.is_set():
            try:
                self._wait_for_change()
                if self._closed.is_set():
                    return
                self.refresh()
            except KeyStoreError as exc:
                if not failing:
                    log.error("API keys not refreshed; serving the last copy",
                              extra={"reason": str(exc)})
                failing = True
                self._closed.wait(self.refresh_seconds)  # the database is down: no spin
            else:
                if failing:
                    log.info("API keys refreshed again")
                failing = False

    # ------------------------------------------------------------------ usage

    def write_usage(self, rows: list[UsageRow]) -> None:
        """Add `rows` to the stored usage, in one transaction (blocking: run it in a thread)."""
        if not rows:
            return
        with self._usage_lock:
            try:
                if self._usage_db is None or self._usage_db.closed or self._usage_db.broken:
                    self._usage_db = self._connect()
                db = self._usage_db
                with db.transaction(), db.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO exposure_usage (key_id, day, requests, records) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (key_id, day) DO UPDATE SET "
                        "requests = exposure_usage.requests + excluded.requests, "
                        "records = exposure_usage.records + excluded.records",
                        rows,
                    )
            except psycopg.Error as exc:
                raise KeyStoreError(f"usage not written to {self.name}: {_reason(exc)}") from None

    def usage(self, key_id: int) -> list[tuple[str, int, int]]:
        with self._admin() as db:
            rows = db.execute(
                "SELECT to_char(day, 'YYYY-MM-DD'), requests, records FROM exposure_usage "
                "WHERE key_id = %s ORDER BY day", (key_id,)).fetchall()
        return [(day, int(requests), int(records)) for day, requests, records in rows]


def _reason(exc: psycopg.Error) -> str:
    # libpq's messages name the host and the user, never the password; the first line
    # is what an operator needs.
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
