"""API keys: created and revoked while the service runs, stored as hashes, usage counted.

The key database is changed through a second `KeyStore` on the same file, as
`exposure-serve keys ...` does from another process (tests/test_serve_cli.py drives
that command itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from live_server import chunked_http_body, live_server, read_until_closed
from service_support import LAETITIA, MARIE, STRANGER, Crafted, bearer, build_crafted, ndjson

from service.app import create_app
from service.resources.apikeys import KeyStore, KeyStoreError
from service.settings import Settings
from service.state import KEYS

Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    return build_crafted(tmp_path_factory.mktemp("crafted"))


@pytest.fixture
def keys_settings(make_settings: Callable[..., Settings], crafted: Crafted) -> Settings:
    return make_settings(index_dir=crafted.index_dir, pepper_file=crafted.pepper_file,
                         usage_flush_seconds=0.05)


@pytest.fixture
async def keys_client(aiohttp_client: Callable[..., Any], keys_settings: Settings) -> Client:
    client: Client = await aiohttp_client(create_app(keys_settings))
    return client


def other_process_store(settings: Settings) -> KeyStore:
    return KeyStore(settings.keys_db)


async def batch(client: Client, token: str, *people: dict[str, str]) -> Any:
    body = b"".join(json.dumps({"ref": i, **p}).encode() + b"\n" for i, p in enumerate(people))
    return await client.post("/v1/check/batch", data=body, headers={
        **bearer(token), "Content-Type": "application/x-ndjson"})


async def test_key_created_while_running_works_at_once(
    keys_client: Client, keys_settings: Settings
) -> None:
    assert (await batch(keys_client, "exk_" + "a" * 43, MARIE)).status == 401
    store = other_process_store(keys_settings)
    try:
        _, token = store.create("Late insurer")
    finally:
        store.close()
    answers = await ndjson(await batch(keys_client, token, MARIE))
    assert answers[0]["found"] is True


async def test_key_revoked_while_running_is_refused_at_once(
    keys_client: Client, keys_settings: Settings
) -> None:
    store = other_process_store(keys_settings)
    try:
        key, token = store.create("Leaving insurer")
        keep, kept_token = store.create("Staying insurer")
        assert (await batch(keys_client, token, MARIE)).status == 200
        assert store.revoke(key.id)
        assert not store.revoke(key.id)  # already revoked
        assert not store.revoke(9999)
    finally:
        store.close()
    response = await batch(keys_client, token, MARIE)
    assert response.status == 401
    assert (await keys_client.post("/v1/check", json=MARIE, headers=bearer(token))).status == 401
    assert (await batch(keys_client, kept_token, MARIE)).status == 200


async def wait_for_usage(settings: Settings, key_id: int, want: tuple[int, int]) -> list[Any]:
    store = other_process_store(settings)
    try:
        for _ in range(400):
            rows = store.usage(key_id)
            if rows and (rows[-1][1], rows[-1][2]) == want:
                return rows
            await asyncio.sleep(0.05)
        return store.usage(key_id)
    finally:
        store.close()


async def test_usage_counts_requests_and_records_per_day(
    keys_client: Client, keys_settings: Settings
) -> None:
    store = other_process_store(keys_settings)
    try:
        key, token = store.create("Counted insurer")
    finally:
        store.close()
    await ndjson(await batch(keys_client, token, MARIE, STRANGER, LAETITIA))
    await ndjson(await batch(keys_client, token, MARIE, {"nir": "bad"}))
    assert (await keys_client.post("/v1/check", json=STRANGER, headers=bearer(token))).status \
        == 200
    rows = await wait_for_usage(keys_settings, key.id, (3, 6))
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    assert rows == [(today, 3, 6)]
    # Listing shows the totals; nothing else about the requests exists to show.
    store = other_process_store(keys_settings)
    try:
        listed = {k.id: (requests, records) for k, requests, records in store.all_keys()}
    finally:
        store.close()
    assert listed[key.id] == (3, 6)


async def test_key_database_holds_hashes_and_counts_never_identifiers(
    aiohttp_client: Callable[..., Any], keys_settings: Settings
) -> None:
    store = other_process_store(keys_settings)
    try:
        _, token = store.create("Audited insurer")
    finally:
        store.close()
    client = await aiohttp_client(create_app(keys_settings))
    await ndjson(await batch(client, token, MARIE, LAETITIA, STRANGER))
    await client.close()  # flushes the usage counters and closes the database
    files = [p for p in keys_settings.keys_db.parent.iterdir()
             if p.name.startswith(keys_settings.keys_db.name)]
    content = b"".join(p.read_bytes() for p in files)
    assert token.encode() not in content
    for person in (MARIE, LAETITIA, STRANGER):
        for value in person.values():
            assert value.encode() not in content
            assert value.upper().encode() not in content
    with sqlite3.connect(keys_settings.keys_db) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(usage)")}
    assert columns == {"key_id", "day", "requests", "records"}


def test_key_store_validates_names_and_rates(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    try:
        with pytest.raises(KeyStoreError):
            store.create("   ")
        with pytest.raises(KeyStoreError):
            store.create("Insurer", rate_per_minute=0)
        key, token = store.create("  Insurer  ", rate_per_minute=500)
        assert key.name == "Insurer" and key.rate_per_minute == 500
        assert token.startswith("exk_") and len(token) > 40
        assert store.authenticate(token) == key
        assert store.authenticate(token + "x") is None
        assert store.authenticate("exk_" + "\udcff" * 10) is None
        assert store.authenticate("exk_" + "a" * 200) is None
    finally:
        store.close()


def test_unusable_key_database_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(KeyStoreError, match="cannot open the key database"):
        KeyStore(blocker / "keys.sqlite")


def test_usage_that_could_not_be_written_is_counted_again(tmp_path: Path) -> None:
    """The app takes the counts on the event loop and writes them in a thread; a write
    that fails puts them back for the next flush rather than losing them."""
    store = KeyStore(tmp_path / "keys.sqlite")
    try:
        key, _ = store.create("Counted insurer")
        store.record_usage(key.id, requests=2, records=5)
        rows = store.take_usage()
        assert store.take_usage() == []  # taken once
        store.put_back_usage(rows)  # as after a failed write
        store.record_usage(key.id, requests=1, records=1)
        store.flush_usage()
        assert [(requests, records) for _, requests, records in store.usage(key.id)] == [(3, 6)]
    finally:
        store.close()


# ------------------------------------------------- faults of the key store (issue 14, 3)


def test_a_new_key_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    KeyStore(path).close()
    assert path.stat().st_mode & 0o777 == 0o600
    status, _, err = serve_cli("keys", "create", "First insurer",
                               "--keys-db", str(tmp_path / "cli.sqlite"))
    assert status == 0 and "creating a new key store" in err
    assert (tmp_path / "cli.sqlite").stat().st_mode & 0o777 == 0o600


async def test_a_key_store_deleted_while_serving_is_seen_and_never_recreated_silently(
    aiohttp_client: Callable[..., Any], keys_settings: Settings, tmp_path: Path,
) -> None:
    store = other_process_store(keys_settings)
    key, token = store.create("Insurer")
    store.close()
    backup = tmp_path / "backup.sqlite"
    with sqlite3.connect(keys_settings.keys_db) as source, sqlite3.connect(backup) as copy:
        source.backup(copy)
    client = await aiohttp_client(create_app(keys_settings))
    assert (await client.get("/readyz")).status == 200
    path = Path(keys_settings.keys_db)
    path.unlink()
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert "missing" in (await ready.json())["detail"]
    assert str(path) not in await ready.text()
    # The CLI neither revokes into a fresh, empty store nor creates one beside the journal.
    status, _, err = serve_cli("keys", "revoke", str(key.id), "--keys-db", str(path))
    assert status == 2 and "no key store" in err and "Traceback" not in err
    status, _, err = serve_cli("keys", "create", "Someone", "--keys-db", str(path))
    assert status == 2 and "journal" in err
    assert not path.exists()
    # Restored from the backup: reopened at the next flush, ready again.
    backup.rename(path)
    for _ in range(200):
        if (await client.get("/readyz")).status == 200:
            break
        await asyncio.sleep(0.05)
    assert (await client.get("/readyz")).status == 200
    assert (await batch(client, token, MARIE)).status == 200


def test_key_ids_are_never_given_twice(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    try:
        first, _ = store.create("A")
        second, _ = store.create("B")
        with store._lock:  # as a careless operator's DELETE would
            store._db.execute("DELETE FROM api_keys WHERE id = ?", (second.id,))
        third, _ = store.create("C")
        assert third.id not in (first.id, second.id)
    finally:
        store.close()


def test_a_read_only_key_store_gives_one_line_errors(tmp_path: Path) -> None:
    # Issue 14 (3): `keys revoke` printed a raw sqlite traceback. The file is read-only
    # and its directory writable (as for a service user and a file it does not own).
    # Root ignores file modes: as root the file is seen through a read-only bind mount.
    place, view = tmp_path / "store", tmp_path / "read-only"
    place.mkdir()
    view.mkdir()
    store = KeyStore(place / "keys.sqlite")
    key, _ = store.create("Insurer")
    store.close()
    if os.geteuid() == 0:
        (view / "keys.sqlite").touch()
        mounted = subprocess.run(["mount", "--bind", str(place / "keys.sqlite"),
                                  str(view / "keys.sqlite")],
                                 capture_output=True, text=True, timeout=30)
        if mounted.returncode != 0:
            pytest.skip(f"cannot bind-mount here ({mounted.stderr.strip()})")
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view / "keys.sqlite")],
                       check=True, timeout=30)
    else:
        (place / "keys.sqlite").rename(view / "keys.sqlite")
        (view / "keys.sqlite").chmod(0o444)
    path = view / "keys.sqlite"
    try:
        for args in (["revoke", str(key.id)], ["create", "Another"]):
            status, _, err = serve_cli("keys", *args, "--keys-db", str(path))
            assert status == 2, err
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
            assert str(path) in err
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


async def test_usage_the_store_refuses_is_counted_in_a_metric(
    aiohttp_client: Callable[..., Any], keys_settings: Settings,
) -> None:
    store = other_process_store(keys_settings)
    _, token = store.create("Insurer")
    store.close()
    app = create_app(keys_settings)
    client = await aiohttp_client(app)
    # The running service's store turns read-only (as a file whose mode or mount
    # changed under it would): sqlite's own switch, on the usage writer's connection.
    app[KEYS]._usage_db.execute("PRAGMA query_only = ON")
    assert (await batch(client, token, MARIE)).status == 200
    text = ""
    for _ in range(200):
        text = await (await client.get("/metrics")).text()
        if "exposure_key_usage_write_failures_total 0.0" not in text:
            break
        await asyncio.sleep(0.05)
    assert re.search(r"exposure_key_usage_write_failures_total [1-9]", text), text[-500:]
    assert (await batch(client, token, MARIE)).status == 200  # reads go on


def serve_cli(*args: str) -> tuple[int, str, str]:
    result = subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True,
                            text=True, timeout=60, cwd=REPO)
    return result.returncode, result.stdout, result.stderr


REPO = Path(__file__).resolve().parent.parent


def test_revocation_ends_a_bulk_stream_in_flight(crafted: Crafted, tmp_path: Path) -> None:
    # Issue 14 (3): a stream opened before `keys revoke` was answered 5,000 lines more.
    keys_db = tmp_path / "keys.sqlite"
    store = KeyStore(keys_db)
    key, token = store.create("Leaving insurer")
    store.close()
    line = json.dumps(STRANGER).encode() + b"\n"
    with live_server(crafted.index_dir, crafted.pepper_file, tmp_path / "serve",
                     "--keys-db", str(keys_db), "--anon-rate", "0") as server, \
            server.connect() as sock:
        sock.sendall(b"POST /v1/check/batch HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + token.encode() + b"\r\n"
                     b"Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + _chunk(line * 10))
        received = b""
        while b'"line":10,' not in received:
            received += sock.recv(65536)
        status, _, _ = serve_cli("keys", "revoke", str(key.id), "--keys-db", str(keys_db))
        assert status == 0
        time.sleep(1.5)  # past the service's revocation check interval
        with contextlib.suppress(OSError):  # the server may close as it reads
            for _ in range(5):
                sock.sendall(_chunk(line * 1000))
            sock.sendall(b"0\r\n\r\n")
        received += read_until_closed(sock, 30)
    lines = [json.loads(raw) for raw in chunked_http_body(received).split(b"\n") if raw]
    revoked = [entry for entry in lines if entry.get("error", {}).get("code") == "key_revoked"]
    assert revoked, lines[-3:]
    answered = [entry for entry in lines if "found" in entry]
    assert len(answered) < 10 + 4096  # at most the chunk being answered when it was seen
    assert lines[-1]["summary"]["errors"] >= 1


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"
