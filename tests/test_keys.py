"""API keys: created and revoked while the service runs, stored as hashes, usage counted.

The key database is changed through a second `KeyStore` on the same file, as
`exposure-serve keys ...` does from another process (tests/test_serve_cli.py drives
that command itself).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from service_support import LAETITIA, MARIE, STRANGER, Crafted, bearer, build_crafted, ndjson

from service.app import create_app
from service.resources.apikeys import KeyStore, KeyStoreError
from service.settings import Settings

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
