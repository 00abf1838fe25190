"""API keys for bulk callers, in SQLite: only a hash of each key is stored.

A key is `exk_` + 32 random bytes (url-safe base64). With 256 bits of entropy a plain
SHA-256 is a sound verifier (nothing to brute-force, unlike a password), and it lets
a key be found by its hash in one indexed query. Keys are read from the database on
every authentication, so a key created or revoked by `exposure-serve keys ...` takes
effect at once in every running worker.

Usage is accounted per key and per day as counts (requests, records): never what
was checked. Usage is counted in memory on the event loop (keyusage.py) and written by
`write_usage` in a worker thread, over a connection of its own: a write (and the
fsync of its commit, or a wait for another process's write lock) never holds up
`authenticate` on the event loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from service.resources.keyusage import UsageCounts, UsageRow

__all__ = ["DEFAULT_KEY_RATE", "ApiKey", "KeyStore", "KeyStoreError"]

DEFAULT_KEY_RATE: Final = 1_000_000  # records per minute
TOKEN_PREFIX: Final = "exk_"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- an id is never given twice
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    rate_per_minute INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS usage (
    key_id INTEGER NOT NULL REFERENCES api_keys(id),
    day TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    records INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day)
);
"""


class KeyStoreError(Exception):
    """The key database cannot be opened or used; the message says which file."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    name: str
    rate_per_minute: int
    created_at: str
    revoked_at: str | None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def could_be_token(token: str) -> bool:
    """The shape of our tokens. They are ASCII: anything else (a header with raw bytes
    arrives as surrogate escapes) cannot be one, and must not reach `encode`."""
    return token.startswith(TOKEN_PREFIX) and len(token) <= 128 and token.isascii()


def new_token(name: str, rate_per_minute: int) -> str:
    """A new token for a key of that name and rate, once both are checked."""
    if not name.strip():
        raise KeyStoreError("a key needs a name (the insurer it is for)")
    if rate_per_minute < 1:
        raise KeyStoreError("--rate must be at least 1 record per minute")
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


FileIdentity = tuple[int, int]  # device, inode


def _identity(path: Path) -> FileIdentity | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _create_owner_only(path: Path) -> None:
    """A new, empty database file readable by its owner only (0600): it holds who may
    query in bulk. SQLite gives its -wal and -shm files the same mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass


def _connect(path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """The keys connection (schema made) and the usage writer's connection."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=5000")
    db.executescript(_SCHEMA)
    usage_db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    usage_db.execute("PRAGMA busy_timeout=5000")
    return db, usage_db


def _one_line(action: str, path: Path, exc: sqlite3.Error) -> KeyStoreError:
    """sqlite's error as one line that says what to do (a read-only file, mostly)."""
    hint = "check that the file and its directory are writable by this user" \
        if "readonly" in str(exc) or "read-only" in str(exc) else "check the file"
    return KeyStoreError(f"cannot {action} in the key store {path}: {exc}; {hint}")


class KeyStore(UsageCounts):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        try:
            _create_owner_only(path)
            self._db, self._usage_db = _connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise KeyStoreError(f"cannot open the key database {path}: {exc}") from exc
        self._opened = _identity(path)
        self._lock = threading.Lock()
        self._usage_lock = threading.Lock()

    def health(self) -> str | None:
        """What is wrong with the file being served, for /readyz; None when all is well.

        A key store deleted (or replaced) under a running service goes on answering from
        the file it opened: revocations written to the new file would never reach it.
        Never names the path (an answer to anyone); the log does.
        """
        current = _identity(self.path)
        if current is None:
            return "the API key store is missing: restore it (keys are checked against " \
                "the deleted file meanwhile)"
        if current != self._opened:
            return "the API key store was replaced and is being reopened"
        try:
            with self._lock:
                self._db.execute("SELECT 1 FROM api_keys LIMIT 1").fetchall()
        except sqlite3.Error:
            return "the API key store cannot be read"
        return None

    def reopen_if_replaced(self) -> bool:
        """Open the file now at the path when it is not the one opened (restored from a
        backup, say); True when reopened. Blocking: run it in a thread."""
        current = _identity(self.path)
        if current is None or current == self._opened:
            return False
        try:
            db, usage_db = _connect(self.path)
        except sqlite3.Error:
            return False
        with self._lock, self._usage_lock:
            old = self._db, self._usage_db
            self._db, self._usage_db, self._opened = db, usage_db, current
        for connection in old:
            connection.close()
        return True

    @contextlib.contextmanager
    def _failing_as(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise _one_line(action, self.path, exc) from exc

    def close(self) -> None:
        """Write what is left of the usage (sqlite3.Error if it cannot be), then close."""
        try:
            self.flush_usage()
        finally:
            with self._usage_lock:
                self._usage_db.close()
            with self._lock:
                self._db.close()

    def migrate(self) -> int:
        """The schema version; an SQLite store is created or completed when opened."""
        return 1

    def create(self, name: str, rate_per_minute: int = DEFAULT_KEY_RATE) -> tuple[ApiKey, str]:
        """A new key and its token, which is shown once and never stored."""
        token = new_token(name, rate_per_minute)
        created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock, self._failing_as("create a key"):
            cursor = self._db.execute(
                "INSERT INTO api_keys (name, token_sha256, rate_per_minute, created_at) "
                "VALUES (?, ?, ?, ?)",
                (name.strip(), _hash(token), rate_per_minute, created),
            )
        key_id = cursor.lastrowid
        assert key_id is not None
        return ApiKey(key_id, name.strip(), rate_per_minute, created, None), token

    def all_keys(self) -> list[tuple[ApiKey, int, int]]:
        """Every key with its total requests and records."""
        with self._lock, self._failing_as("list the keys"):
            rows = self._db.execute(
                "SELECT k.id, k.name, k.rate_per_minute, k.created_at, k.revoked_at, "
                "COALESCE(SUM(u.requests), 0), COALESCE(SUM(u.records), 0) "
                "FROM api_keys k LEFT JOIN usage u ON u.key_id = k.id "
                "GROUP BY k.id ORDER BY k.id"
            ).fetchall()
        return [(ApiKey(*row[:5]), row[5], row[6]) for row in rows]

    def revoke(self, key_id: int) -> bool:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock, self._failing_as("revoke a key"):
            cursor = self._db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, key_id),
            )
        return cursor.rowcount == 1

    def authenticate(self, token: str) -> ApiKey | None:
        """The live key behind `token`, or None (unknown or revoked)."""
        if not could_be_token(token):
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, rate_per_minute, created_at, revoked_at FROM api_keys "
                "WHERE token_sha256 = ? AND revoked_at IS NULL",
                (_hash(token),),
            ).fetchone()
        return ApiKey(*row) if row else None

    def write_usage(self, rows: list[UsageRow]) -> None:
        """Add `rows` to the stored usage, in one transaction (blocking: run it in a thread)."""
        if not rows:
            return
        # `with` the connection: COMMIT, or ROLLBACK on any error.
        with self._usage_lock, self._usage_db:
            self._usage_db.execute("BEGIN IMMEDIATE")
            self._usage_db.executemany(
                "INSERT INTO usage (key_id, day, requests, records) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key_id, day) DO UPDATE SET "
                "requests = requests + excluded.requests, records = records + excluded.records",
                rows,
            )

    def usage(self, key_id: int) -> list[tuple[str, int, int]]:
        with self._lock:
            return self._db.execute(
                "SELECT day, requests, records FROM usage WHERE key_id = ? ORDER BY day",
                (key_id,),
            ).fetchall()
