"""Private lookups end to end (docs/design.md §7): real index, real private part, real app.

The private part is built by the real `build_private` from the session's synthetic
breach and attached to a fresh generation the way `build --private` does before it
publishes; the app is `create_app`. The end-to-end test
compares a private check with the plain `/v1/check` on every member of members.csv.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import Breach, agrees_with_ground_truth, query_fields

from client.private import PrivateChecker, PrivateVerdict, connect, params_from_json
from indexer.build.dumps import detect_layout, iter_blocks, parse_block
from indexer.build.local import BuildOptions, build_index
from indexer.build.private import PrivateBuild, build_private
from indexer.build.sources import load_sources
from indexer.core.identity import fold_name, normalize_nir
from indexer.core.matchkeys import QueryError
from indexer.core.records import record_keys
from indexer.index.generation import current_generation
from indexer.index.manifest import load_manifest, write_manifest
from indexer.private import oprf
from indexer.private.keys import (
    OPRF_KEY_ENV,
    OprfKeyError,
    load_oprf_key,
    resolve_oprf_key_file,
    write_oprf_key,
)
from indexer.private.params import ENTRIES_FILE, OFFSETS_FILE, default_bucket_bits
from indexer.private.store import PrivateIndex, PrivateIndexError, stored_entry, verify_private
from service.app import create_app
from service.resources.private import precheck
from service.settings import Settings
from service.views import private

Client = TestClient[web.Request, web.Application]
PARAM_NAMES = {"suite", "mode", "bucket_bits", "output_bytes", "bucket_size", "key_id"}


@dataclass(frozen=True)
class PrivateBreach:
    index_dir: Path
    generation: Path
    key_file: Path
    key: bytes
    section: dict[str, Any]


def write_key_file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    path.chmod(0o600)
    return path


def attach_private(generation: Path, section: dict[str, Any]) -> None:
    """Put a rebuilt private section into a copied generation's manifest."""
    manifest = load_manifest(generation)
    manifest["private"] = section
    write_manifest(generation, manifest)


@pytest.fixture(scope="module")
def private_breach(breach: Breach, tmp_path_factory: pytest.TempPathFactory) -> PrivateBreach:
    root = tmp_path_factory.mktemp("private")
    index_dir = root / "index"
    key = oprf.generate_private_key()
    key_file = write_key_file(root / "oprf.key", key.hex().encode() + b"\n")
    # The real `build --private` path: the private part is built inside the partial
    # generation and published with it.
    report = build_index(breach.sources_toml, index_dir, breach.pepper_file.read_bytes(),
                         BuildOptions(shards=4, workers=1, private=PrivateBuild(key)))
    generation = current_generation(index_dir)
    assert generation == report.generation
    section = load_manifest(generation)["private"]
    return PrivateBreach(index_dir, generation, key_file, key, section)


@pytest.fixture
async def private_client(
    aiohttp_client: Callable[..., Awaitable[Client]], make_settings: Callable[..., Settings],
    private_breach: PrivateBreach,
) -> AsyncIterator[Client]:
    settings = make_settings(index_dir=private_breach.index_dir,
                             oprf_key_file=private_breach.key_file)
    yield await _client(aiohttp_client, settings)


async def _client(
    aiohttp_client: Callable[..., Awaitable[Client]], settings: Settings
) -> Client:
    app = create_app(settings)
    return await aiohttp_client(app)


def evaluator(client: Client) -> Callable[[list[dict[str, Any]]], Awaitable[Mapping[str, Any]]]:
    async def evaluate(items: list[dict[str, Any]]) -> Mapping[str, Any]:
        response = await client.post("/v1/private/evaluate", json={"items": items})
        assert response.status == 200, await response.text()
        assert response.headers["Cache-Control"] == "no-store"
        answer: Mapping[str, Any] = await response.json()
        return answer

    return evaluate


async def _params(client: Client) -> dict[str, Any]:
    response = await client.get("/v1/private/params")
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


# ------------------------------------------------------------------------ contract


async def test_params_are_exactly_those_of_design(
    private_client: Client, private_breach: PrivateBreach
) -> None:
    response = await private_client.get("/v1/private/params")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert set(body) == PARAM_NAMES
    section = private_breach.section
    assert body == {
        "suite": "ristretto255-SHA512", "mode": "oprf",
        "bucket_bits": section["bucket_bits"], "output_bytes": 8,
        "bucket_size": section["bucket_size"], "key_id": oprf.key_id(private_breach.key),
    }
    # 7,000 distinct keys at <= 48 per bucket on average: 2^8 buckets.
    assert body["bucket_bits"] == default_bucket_bits(section["entries"]) == 8
    assert body["bucket_size"] >= section["max_bucket_entries"]
    assert body["bucket_size"] % 8 == 0


async def test_private_check_matches_plain_check_on_every_member(
    private_client: Client, breach: Breach
) -> None:
    members = breach.members()
    expected = breach.expected()
    checker = PrivateChecker(params_from_json(await _params(private_client)),
                             evaluator(private_client), batch_items=97)
    outcomes = await checker.check_many([query_fields(m) for m in members])
    assert len(outcomes) == len(members)
    seen = {"strong": 0, "weak": 0, "not_found": 0}
    for member, outcome in zip(members, outcomes, strict=True):
        response = await private_client.post("/v1/check", json=query_fields(member))
        if response.status == 422:
            assert isinstance(outcome, QueryError), member["ref"]
            continue
        plain = await response.json()
        assert isinstance(outcome, PrivateVerdict), member["ref"]
        if plain["match"] == "similar":  # private mode does not answer `similar`
            assert (outcome.found, outcome.match) == (False, None), member["ref"]
            continue
        assert (outcome.found, outcome.match) == (plain["found"], plain["match"]), member["ref"]
        if plain["found"]:
            # The private answer names the key, never the source: matched_on is the
            # strongest key's, as in each plain source entry of that strength.
            assert list(outcome.matched_on) in [s["matched_on"] for s in plain["sources"]]
        seen[outcome.match or "not_found"] += 1
        truth = expected[member["ref"]]
        assert agrees_with_ground_truth(truth, outcome.found, outcome.match, truth["sources"]
                                        if outcome.found else ""), member["ref"]
    # The acceptance data has all three outcomes; make sure the test saw them.
    assert min(seen.values()) >= 20, seen


async def test_single_check_and_http_transport(
    private_client: Client, breach: Breach
) -> None:
    expected = breach.expected()
    strong = next(m for m in breach.members() if expected[m["ref"]]["match"] == "strong")
    weak = next(m for m in breach.members() if expected[m["ref"]]["match"] == "weak"
                and expected[m["ref"]]["kind"] != "several_given_names")
    absent = next(m for m in breach.members() if expected[m["ref"]]["in_breach"] == "false")
    # connect(): the aiohttp transport, over the test server's loopback socket.
    checker = await connect(str(private_client.make_url("")), private_client.session)
    assert (await checker.check(query_fields(strong))).match == "strong"
    only_names = {k: weak[k] for k in ("last_name", "first_name", "birth_date")}
    assert (await checker.check(only_names)).as_json() == {
        "found": True, "match": "weak", "matched_on": ["last_name", "first_name", "birth_date"]}
    assert (await checker.check(query_fields(absent))).found is False
    with pytest.raises(QueryError):
        await checker.check({"nir": strong["nir"]})  # no date of birth: incomplete


async def test_given_names_are_read_as_the_plain_check_reads_them(
    private_client: Client, breach: Breach
) -> None:
    """docs/design.md §3 in private mode: several given names typed with commas find the
    record as the plain check does (weak); another given name alone is `similar` for the
    plain check and not found in private mode, which does not answer `similar`."""
    rows = [row for row in _dump_rows(breach.sources_toml)
            if row[1] and row[4] and len(row[3].replace(",", " ").split()) >= 2]
    assert rows, "the synthetic breach has records with several given names"
    checker = PrivateChecker(params_from_json(await _params(private_client)),
                             evaluator(private_client))
    seen = 0
    for row in rows[:20]:
        names = row[3].replace(",", " ").split()
        for first_name, plain_level, private_found in (
                (", ".join(names), "weak", True), (names[1], "similar", False)):
            query = {"last_name": row[1], "first_name": first_name, "birth_date": row[4]}
            response = await private_client.post("/v1/check", json=query)
            if response.status != 200:
                continue
            plain = await response.json()
            if plain["match"] != plain_level:
                continue  # a homonym, or a second name that is also a first one
            outcome = await checker.check(query)
            assert outcome.found is private_found
            if private_found:
                assert outcome.match == "weak"
            seen += 1
    assert seen >= 10


async def test_every_bucket_answers_exactly_bucket_size_sorted_entries(
    private_client: Client, private_breach: PrivateBreach
) -> None:
    params = await _params(private_client)
    size, width = params["bucket_size"], params["output_bytes"]
    _, blinded = oprf.blind(b"weak|NOBODY|NOONE|1900-01-01")
    items = [{"bucket": b, "blinded": blinded.hex()} for b in range(1 << params["bucket_bits"])]
    answer = await evaluator(private_client)(items)
    again = await evaluator(private_client)(items[:16])
    index = PrivateIndex(private_breach.generation)
    try:
        for bucket, item in enumerate(answer["items"]):
            entries = item["entries"]
            assert len(entries) == size
            assert all(re.fullmatch(f"[0-9a-f]{{{2 * width}}}", e) for e in entries)
            assert entries == sorted(entries)
            stored = {e.hex() for e in index.stored(bucket)}
            assert stored <= set(entries)
            assert item["evaluated"] == oprf.blind_evaluate(private_breach.key, blinded).hex()
            if bucket < 16:
                # Fresh padding per answer, same real entries.
                repeat = set(again["items"][bucket]["entries"])
                assert repeat & set(entries) == stored
    finally:
        index.close()


def _top_bit_set() -> str:
    element = oprf.blind(b"weak|A|B|2000-01-01")[1]
    return (element[:31] + bytes([element[31] | 0x80])).hex()


@pytest.mark.parametrize(("item", "field", "code"), [
    ({"bucket": 0, "blinded": "zz" * 32}, "items[0].blinded", "invalid_point"),
    ({"bucket": 0, "blinded": "ab" * 31}, "items[0].blinded", "invalid_point"),
    ({"bucket": 0, "blinded": "00" * 32}, "items[0].blinded", "invalid_point"),  # identity
    ({"bucket": 0, "blinded": "ff" * 32}, "items[0].blinded", "invalid_point"),  # not canonical
    # A canonical element with its top bit set (issue 14: it was evaluated).
    ({"bucket": 0, "blinded": _top_bit_set()}, "items[0].blinded", "invalid_point"),
    ({"bucket": 0, "blinded": 12}, "items[0].blinded", "invalid_point"),
    ({"bucket": 0}, "items[0].blinded", "invalid_point"),
    ({"bucket": -1, "blinded": None}, "items[0].bucket", "invalid_bucket"),
    ({"bucket": 256, "blinded": None}, "items[0].bucket", "invalid_bucket"),
    ({"bucket": "3", "blinded": None}, "items[0].bucket", "invalid_bucket"),
    ({"bucket": True, "blinded": None}, "items[0].bucket", "invalid_bucket"),
    ({"bucket": 1.0, "blinded": None}, "items[0].bucket", "invalid_bucket"),
    ("not an object", "items[0]", "invalid_item"),
])
async def test_invalid_items_are_422_without_echo(
    private_client: Client, item: Any, field: str, code: str
) -> None:
    _, good = oprf.blind(b"strong|253072B07300470|1953-07-01")
    if isinstance(item, dict) and item.get("blinded", 0) is None:
        item = {**item, "blinded": good.hex()}
    response = await private_client.post("/v1/private/evaluate", json={"items": [item]})
    assert response.status == 422
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert {"field": field, "code": code} == {
        k: problem["errors"][0][k] for k in ("field", "code")}
    text = await response.text()
    for value in ("zz" * 32, "ab" * 31, "ff" * 32, good.hex()):
        assert value not in text


async def test_the_faulty_item_is_named(private_client: Client) -> None:
    _, good = oprf.blind(b"strong|253072B07300470|1953-07-01")
    items = [{"bucket": i, "blinded": good.hex()} for i in range(5)]
    items[3]["blinded"] = "ff" * 32
    response = await private_client.post("/v1/private/evaluate", json={"items": items})
    assert response.status == 422
    assert [(e["field"], e["code"]) for e in (await response.json())["errors"]] == [
        ("items[3].blinded", "invalid_point")]


@pytest.mark.parametrize("body", [
    {"items": []},
    {"items": "all of them"},
    {"things": []},
])
async def test_item_list_shape_is_422(private_client: Client, body: Any) -> None:
    response = await private_client.post("/v1/private/evaluate", json=body)
    assert response.status == 422
    assert (await response.json())["errors"][0]["code"] == "invalid_items"


async def test_more_than_1000_items_is_422(private_client: Client) -> None:
    _, good = oprf.blind(b"weak|A|B|2000-01-01")
    items = [{"bucket": 0, "blinded": good.hex()}] * 1001
    response = await private_client.post("/v1/private/evaluate", json={"items": items})
    assert response.status == 422
    assert (await response.json())["errors"][0] == {
        "field": "items", "code": "invalid_items",
        "message": "Send 1 to 1000 items per request."}
    ok = await private_client.post("/v1/private/evaluate", json={"items": items[:1000]})
    assert ok.status == 200
    assert len((await ok.json())["items"]) == 1000


async def test_malformed_bodies(private_client: Client) -> None:
    bad_json = await private_client.post("/v1/private/evaluate", data=b"{",
                                         headers={"Content-Type": "application/json"})
    assert bad_json.status == 400
    not_json = await private_client.post("/v1/private/evaluate", data=b"items",
                                         headers={"Content-Type": "text/plain"})
    assert not_json.status == 415
    huge = await private_client.post("/v1/private/evaluate", data=b" " * (300 * 1024),
                                     headers={"Content-Type": "application/json"})
    assert huge.status == 413


async def test_each_item_costs_one_unit_of_the_limit(
    aiohttp_client: Callable[..., Awaitable[Client]], make_settings: Callable[..., Settings],
    private_breach: PrivateBreach,
) -> None:
    settings = make_settings(index_dir=private_breach.index_dir,
                             oprf_key_file=private_breach.key_file, anon_rate=6.0, anon_burst=5)
    client = await _client(aiohttp_client, settings)
    _, good = oprf.blind(b"weak|A|B|2000-01-01")
    items = [{"bucket": 0, "blinded": good.hex()}] * 4
    assert (await client.post("/v1/private/evaluate", json={"items": items})).status == 200
    refused = await client.post("/v1/private/evaluate", json={"items": items[:2]})
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1
    # One unit was left: a malformed request spends it too.
    assert (await client.post("/v1/private/evaluate", json={"items": []})).status == 422
    assert (await client.post("/v1/private/evaluate", json={"items": items[:1]})).status == 429


async def test_items_beyond_what_the_bucket_holds_are_refused_not_let_through_on_credit(
    aiohttp_client: Callable[..., Awaitable[Client]], make_settings: Callable[..., Settings],
    private_breach: PrivateBreach,
) -> None:
    # Issue 14 (2): 1,000 items passed on a full anonymous bucket of 10.
    settings = make_settings(index_dir=private_breach.index_dir,
                             oprf_key_file=private_breach.key_file, anon_rate=6.0, anon_burst=10)
    client = await _client(aiohttp_client, settings)
    _, good = oprf.blind(b"weak|A|B|2000-01-01")
    items = [{"bucket": 0, "blinded": good.hex()}] * 1000
    refused = await client.post("/v1/private/evaluate", json={"items": items})
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "at most 10 items" in (await refused.json())["detail"]
    # Refusing it cost nothing: the full bucket still pays for 10.
    assert (await client.post("/v1/private/evaluate", json={"items": items[:10]})).status == 200
    assert (await client.post("/v1/private/evaluate", json={"items": items[:1]})).status == 429


async def test_an_api_key_brings_its_own_limit(
    aiohttp_client: Callable[..., Awaitable[Client]], make_settings: Callable[..., Settings],
    private_breach: PrivateBreach, api_key: str,
) -> None:
    settings = make_settings(index_dir=private_breach.index_dir,
                             oprf_key_file=private_breach.key_file, anon_rate=6.0, anon_burst=5)
    client = await _client(aiohttp_client, settings)
    _, good = oprf.blind(b"weak|A|B|2000-01-01")
    items = [{"bucket": 0, "blinded": good.hex()}] * 1000
    keyed = await client.post("/v1/private/evaluate", json={"items": items},
                              headers={"Authorization": f"Bearer {api_key}"})
    assert keyed.status == 200
    unknown = await client.post("/v1/private/evaluate", json={"items": items[:1]},
                                headers={"Authorization": "Bearer not-a-key"})
    assert unknown.status == 401


# ------------------------------------------- switched off: 404, never a 5xx (design §5)


async def test_generation_without_private_part_is_404(
    aiohttp_client: Callable[..., Awaitable[Client]], make_settings: Callable[..., Settings],
    private_breach: PrivateBreach,
) -> None:
    # The session's breach index was built without --private.
    client = await _client(aiohttp_client, make_settings(oprf_key_file=private_breach.key_file))
    for response in (await client.get("/v1/private/params"),
                     await client.post("/v1/private/evaluate", json={"items": [{}]})):
        assert response.status == 404
        assert response.content_type == "application/problem+json"
        assert (await response.json())["type"].endswith("/not-enabled")
    assert (await client.post("/v1/check", json={"nir": "253072B07300470",
                                                 "birth_date": "1953-07-01"})).status == 200


async def test_no_oprf_key_is_404_and_wrong_key_is_refused(
    aiohttp_client: Callable[..., Awaitable[Client]], make_settings: Callable[..., Settings],
    private_breach: PrivateBreach, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(OPRF_KEY_ENV, raising=False)
    settings = make_settings(index_dir=private_breach.index_dir)
    client = await _client(aiohttp_client, settings)
    for response in (await client.get("/v1/private/params"),
                     await client.post("/v1/private/evaluate", json={"items": [{}]})):
        assert response.status == 404  # a switched-off feature, not a failing service
        assert response.content_type == "application/problem+json"
    other = write_key_file(tmp_path / "other.key", oprf.generate_private_key())
    settings = make_settings(index_dir=private_breach.index_dir, oprf_key_file=other)
    client = await _client(aiohttp_client, settings)
    response = await client.get("/v1/private/params")
    assert response.status == 404
    assert other.read_bytes().hex() not in await response.text()
    with pytest.raises(OprfKeyError, match="not the one the index"):
        precheck(settings)
    precheck(make_settings(index_dir=private_breach.index_dir,
                                   oprf_key_file=private_breach.key_file))


async def test_switched_off_before_any_index_is_still_404_and_only_no_index_is_503(
    aiohttp_client: Callable[..., Awaitable[Client]], make_settings: Callable[..., Settings],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 14 (1): a switched-off feature answered 503 and a proxy counting 5xx marked
    # every backend down. Only a backend-local state (no index loaded yet) is a 503.
    monkeypatch.delenv(OPRF_KEY_ENV, raising=False)
    client = await _client(aiohttp_client, make_settings(index_dir=tmp_path / "empty"))
    assert (await client.get("/v1/private/params")).status == 404
    assert (await client.post("/v1/check", json={"nir": "253072B07300470",
                                                 "birth_date": "1953-07-20"})).status == 503


# -------------------------------------------------------------- what the files hold


def _dump_rows(sources_toml: Path) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for source in load_sources(sources_toml):
        layout = detect_layout(source)
        for block in iter_blocks(layout):
            rows.extend(row for row in parse_block(block, layout) if row is not None)
    return rows


def test_private_files_hold_no_identifier_and_no_key(
    private_breach: PrivateBreach, breach: Breach
) -> None:
    private_dir = private_breach.generation / "private"
    assert sorted(p.name for p in private_dir.iterdir()) == ["entries.bin", "offsets.bin"]
    blobs = [(private_breach.generation / name).read_bytes()
             for name in (ENTRIES_FILE, OFFSETS_FILE)]
    needles: set[bytes] = set()
    for row in _dump_rows(breach.sources_toml):
        nir, last, usage, first, birth_date = row[:5]
        for raw in (nir, last, usage, first, birth_date):
            if len(raw) >= 6:
                needles.add(raw.encode())
        for name in (last, usage):
            try:
                folded = fold_name(name)
            except ValueError:
                continue
            if len(folded) >= 6:
                needles.add(folded.encode())
        try:
            needles.add(normalize_nir(nir).encode())
        except ValueError:
            pass
        needles.update(key.encode() for key in record_keys(row)[0])
    assert len(needles) > 5000
    for blob in blobs:
        assert not [n for n in needles if n in blob]
    # The OPRF key is never inside the index, raw or hex, in any file of the generation.
    key = private_breach.key
    for path in private_breach.generation.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert key not in content and key.hex().encode() not in content, path.name


def test_bucket_from_design_section_alone_agrees(
    private_breach: PrivateBreach, breach: Breach
) -> None:
    # docs/design.md §7 only: the first 4 bytes of SHA-256("exposure-bucket-v1|" + input),
    # big-endian, shifted right by 32 - bucket_bits.
    bits: int = private_breach.section["bucket_bits"]
    width: int = private_breach.section["output_bytes"]

    def bucket(canonical: str) -> int:
        digest = hashlib.sha256(("exposure-bucket-v1|" + canonical).encode("utf-8")).digest()
        return int.from_bytes(digest[:4], "big") >> (32 - bits)

    index = PrivateIndex(private_breach.generation)
    try:
        keys = [k for row in _dump_rows(breach.sources_toml)[:300] for k in record_keys(row)[0]]
        assert len(keys) > 300
        for canonical in keys:
            assert bucket(canonical) == oprf.bucket_of(canonical, bits)
            entry = stored_entry(private_breach.key, canonical, width)
            assert entry in index.stored(bucket(canonical))
    finally:
        index.close()


async def test_a_client_from_the_design_alone_finds_a_record(
    private_client: Client, breach: Breach
) -> None:
    # The steps of §7 done by hand: bucket by hashlib, RFC 9497 blind, evaluate, finalize.
    params = await _params(private_client)
    canonical = record_keys(_dump_rows(breach.sources_toml)[0])[0][0]
    digest = hashlib.sha256(b"exposure-bucket-v1|" + canonical.encode()).digest()
    bucket = int.from_bytes(digest[:4], "big") >> (32 - params["bucket_bits"])
    blind, blinded = oprf.blind(canonical.encode())
    answer = await evaluator(private_client)([{"bucket": bucket, "blinded": blinded.hex()}])
    item = answer["items"][0]
    output = oprf.finalize(canonical.encode(), blind, bytes.fromhex(item["evaluated"]))
    assert output[: params["output_bytes"]].hex() in item["entries"]


def test_parallel_build_is_identical_and_verified(
    private_breach: PrivateBreach, breach: Breach, tmp_path: Path
) -> None:
    generation = tmp_path / "gen"
    shutil.copytree(private_breach.generation, generation)
    shutil.rmtree(generation / "private")
    section = build_private(breach.sources_toml, generation, private_breach.key,
                            output_bytes=8, workers=2, block_size=64 << 10)
    attach_private(generation, section)
    for name in (ENTRIES_FILE, OFFSETS_FILE):
        assert (generation / name).read_bytes() == (private_breach.generation / name).read_bytes()
    assert section["files"] == private_breach.section["files"]
    assert verify_private(generation) == []
    # Corruption is found by verify and refused by the reader.
    entries = generation / ENTRIES_FILE
    data = bytearray(entries.read_bytes())
    data[100] ^= 0xFF
    entries.write_bytes(bytes(data))
    assert any("checksum" in fault for fault in verify_private(generation))
    with pytest.raises(PrivateIndexError):
        PrivateIndex(generation)


def test_explicit_bucket_bits_and_width(private_breach: PrivateBreach, breach: Breach,
                                        tmp_path: Path) -> None:
    generation = tmp_path / "gen"
    generation.mkdir()
    section = build_private(breach.sources_toml, generation, private_breach.key,
                            bucket_bits=3, output_bytes=5, workers=1)
    assert (section["bucket_bits"], section["output_bytes"]) == (3, 5)
    offsets = (generation / OFFSETS_FILE).read_bytes()
    assert len(offsets) == 8 * 9
    assert int.from_bytes(offsets[-8:], "little") * 5 == (generation / ENTRIES_FILE).stat().st_size
    with pytest.raises(ValueError):
        build_private(breach.sources_toml, generation, private_breach.key, bucket_bits=29)


def test_default_bucket_bits() -> None:
    assert default_bucket_bits(0) == 0
    assert default_bucket_bits(48) == 0
    assert default_bucket_bits(49) == 1
    # The 33 million synthetic records give ~58 million distinct keys: 2^21 buckets.
    assert default_bucket_bits(58_000_000) == 21
    assert default_bucket_bits(10**12) == 24


# ------------------------------------------------------------------- OPRF key file


def test_oprf_key_file_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = oprf.generate_private_key()
    raw = write_key_file(tmp_path / "raw.key", key)
    hexed = write_key_file(tmp_path / "hex.key", key.hex().upper().encode() + b"\n")
    assert load_oprf_key(raw) == load_oprf_key(hexed) == key
    not_scalar = write_key_file(tmp_path / "big.key", b"\xff" * 32)
    short = write_key_file(tmp_path / "short.key", os.urandom(31))
    for path, message in ((not_scalar, "not a ristretto255 scalar"), (short, "31 bytes"),
                          (tmp_path / "missing.key", "cannot read")):
        with pytest.raises(OprfKeyError, match=message) as caught:
            load_oprf_key(path)
        assert "ff" * 32 not in str(caught.value)
    monkeypatch.delenv(OPRF_KEY_ENV, raising=False)
    with pytest.raises(OprfKeyError, match="--oprf-key-file"):
        resolve_oprf_key_file(None)
    monkeypatch.setenv(OPRF_KEY_ENV, str(raw))
    assert resolve_oprf_key_file(None) == raw
    assert resolve_oprf_key_file(hexed) == hexed
    fresh = tmp_path / "fresh.key"
    key_id = write_oprf_key(fresh)
    assert fresh.stat().st_mode & 0o777 == 0o600
    assert oprf.key_id(load_oprf_key(fresh)) == key_id
    open_to_all = write_key_file(tmp_path / "open.key", key)
    open_to_all.chmod(0o644)
    with pytest.warns(UserWarning, match="chmod 600"):
        load_oprf_key(open_to_all)


def test_openapi_paths_merge_into_a_valid_document() -> None:
    from openapi_spec_validator import validate

    from service.views.openapi import openapi_document

    # Validated with only the components they use, so that the test judges these two
    # paths and not the rest of the document.
    components = openapi_document()["components"]
    document = {
        "openapi": "3.1.0",
        "info": {"title": "private lookups", "version": "1"},
        "paths": copy.deepcopy(private.PRIVATE_OPENAPI_PATHS),
        "components": {
            "securitySchemes": components["securitySchemes"],
            "schemas": {name: components["schemas"][name] for name in ("Problem", "FieldError")},
        },
    }
    validate(document)
    evaluate = private.PRIVATE_OPENAPI_PATHS["/v1/private/evaluate"]["post"]
    assert set(evaluate["responses"]) >= {"200", "404", "422", "429", "503"}


def test_cli_build_private_publishes_and_verifies(breach: Breach, tmp_path: Path) -> None:
    """`exposure-index build --private`: the private part is published with the index."""
    import subprocess
    import sys

    key_file = write_key_file(tmp_path / "oprf.key", oprf.generate_private_key())
    env = {k: v for k, v in os.environ.items() if k != OPRF_KEY_ENV}
    index_dir = tmp_path / "index"
    base = [sys.executable, "-m", "indexer.cli"]
    common = ["build", str(breach.sources_toml), "--out", str(index_dir),
              "--pepper-file", str(breach.pepper_file), "--shards", "2", "--workers", "1"]
    missing = subprocess.run([*base, *common, "--private"], capture_output=True, text=True,
                             env=env, timeout=120)
    assert missing.returncode == 2 and OPRF_KEY_ENV in missing.stderr
    assert not (index_dir / "current").exists()  # refused before any work
    built = subprocess.run([*base, *common, "--private", "--oprf-key-file", str(key_file)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert built.returncode == 0, built.stderr
    generation = current_generation(index_dir)
    assert (generation / ENTRIES_FILE).is_file()
    assert load_manifest(generation)["private"]["key_id"] == oprf.key_id(
        load_oprf_key(key_file))
    verified = subprocess.run([*base, "verify", str(index_dir)], capture_output=True,
                              text=True, timeout=120)
    assert verified.returncode == 0, verified.stderr
    entries = generation / ENTRIES_FILE
    data = bytearray(entries.read_bytes())
    data[0] ^= 0x01
    entries.write_bytes(bytes(data))
    corrupt = subprocess.run([*base, "verify", str(index_dir)], capture_output=True,
                             text=True, timeout=120)
    assert corrupt.returncode == 1 and "private" in corrupt.stderr


def test_client_cli_private_mode_matches_the_expected_verdicts(
    private_breach: PrivateBreach, breach: Breach, tmp_path: Path,
) -> None:
    """`exposure-client check --private` against a real `exposure-serve` process: every
    member's found/match equals the generator's ground truth; no identifier written."""
    import csv as csv_module
    import subprocess
    import sys

    from live_server import clean_env, live_server

    out = tmp_path / "results.csv"
    with live_server(private_breach.index_dir, breach.pepper_file, tmp_path / "serve",
                     "--anon-rate", "0", "--oprf-key-file", str(private_breach.key_file)
                     ) as server:
        done = subprocess.run(
            [sys.executable, "-m", "client.bulk", "check", str(breach.dir / "members.csv"),
             "--url", f"http://127.0.0.1:{server.port}", "--out", str(out), "--private"],
            capture_output=True, text=True, env=clean_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    with out.open(encoding="utf-8", newline="") as stream:
        rows = list(csv_module.DictReader(stream))
    expected = breach.expected()
    assert [row["ref"] for row in rows] == [m["ref"] for m in breach.members()]
    for row in rows:
        want = expected[row["ref"]]
        # The private mode cannot know the sources: the expected ones stand in for them.
        listed = want["sources"] if row["found"] == "true" else ""
        assert agrees_with_ground_truth(want, row["found"] == "true", row["match"] or None,
                                        listed, refused=bool(row["error"])), row["ref"]
        assert row["sources"] == row["exposed"] == ""  # the private mode cannot know them
    written = out.read_text(encoding="utf-8") + done.stderr
    for member in breach.members():
        for field in ("nir", "last_name", "birth_date"):
            if len(member[field]) >= 6:
                assert member[field] not in written
