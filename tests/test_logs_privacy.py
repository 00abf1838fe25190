"""No identifier leaves the request: not in the logs, not in /metrics, not in answers.

The logs are captured as the CLI configures them (`configure_logging`, JSON lines),
a varied set of requests is sent (found, not found, invalid, malformed, too large,
rate limited, bulk NDJSON and CSV with bad lines, identifiers in paths and query
strings), and every captured line and the metrics page are scanned for every
identifier sent, in the forms it was sent and in its normalised forms.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from service_support import JEAN_PIERRE, LAETITIA, MARIE, STRANGER, Crafted, bearer, build_crafted

from indexer.identity import fold_name, normalize_birth_date, normalize_nir
from service.apikeys import KeyStore
from service.app import create_app
from service.logs import configure_logging
from service.settings import Settings

Client = TestClient[web.Request, web.Application]
PEOPLE = (MARIE, JEAN_PIERRE, LAETITIA, STRANGER)
TYPO = {**MARIE, "nir": "294037512000592", "last_name": "Dupond"}


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    return build_crafted(tmp_path_factory.mktemp("crafted"))


@pytest.fixture
def captured_log() -> Iterator[io.StringIO]:
    """The root logger as `exposure-serve` sets it up, writing into a StringIO."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    access = logging.getLogger("aiohttp.access")
    saved_access = access.level
    stream = io.StringIO()
    configure_logging("DEBUG", stream)
    try:
        yield stream
    finally:
        root.handlers[:], root.level = saved
        access.setLevel(saved_access)


def forms_of(person: dict[str, str]) -> set[str]:
    """Every way an identifier of `person` could show up in text."""
    forms: set[str] = set()
    for field, value in person.items():
        if not value:
            continue
        forms |= {value, value.upper(), value.lower(), json.dumps(value)[1:-1]}
        try:
            if field == "nir":
                forms.add(normalize_nir(value))
                forms.add(normalize_nir(value)[:13])
            elif field == "birth_date":
                forms.add(normalize_birth_date(value))
            else:
                forms.add(fold_name(value))
        except ValueError:
            pass
    # Short fragments would match by chance (log levels, route names): names here are
    # all longer than four letters.
    return {f for f in forms if len(f) > 4}


def assert_nothing_of(text: str, people: tuple[dict[str, str], ...]) -> None:
    for person in people:
        for form in forms_of(person):
            assert form not in text, f"an identifier ({len(form)} chars) leaked"
            assert form.upper() not in text.upper(), f"an identifier ({len(form)} chars) leaked"


async def raw_request(client: Client, request: bytes) -> bytes:
    """Bytes no HTTP client library would send: aiohttp's parser refuses them."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


async def exercise(client: Client, token: str) -> None:
    """A bit of everything a client can send, identifiers everywhere."""
    await client.post("/v1/check", data=json.dumps(MARIE).encode()[:-3],
                      headers={"Content-Type": "application/json"})
    await client.post("/v1/check", data=json.dumps(MARIE).encode(),
                      headers={"Content-Type": "text/plain"})
    await client.post("/v1/check", json={**MARIE, "pad": "x" * 20000})
    await client.post("/v1/check", json=MARIE, headers=bearer("exk_" + MARIE["nir"]))
    for person in (*PEOPLE, TYPO):
        await client.post("/v1/check", json=person)
        await client.post("/v1/check", json=person, headers=bearer(token))
        await client.post("/v1/check", json={"nir": person["nir"]})
    for person in PEOPLE:  # past the anonymous burst by now: 429
        await client.post("/v1/check", json=person)
    await client.get(f"/v1/check?nir={MARIE['nir']}&birth_date={MARIE['birth_date']}")
    await client.get(f"/v1/people/{LAETITIA['nir']}/{LAETITIA['last_name']}")
    await client.get(f"/?nir={JEAN_PIERRE['nir']}&last_name={JEAN_PIERRE['last_name']}")
    nir, last_name = MARIE["nir"].encode(), LAETITIA["last_name"].encode()
    for garbage in (
        b"GET /v1/check?nir=" + nir + b"\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/check HTTP/1.1\r\nHost: x\r\nX-Nir: " + nir + b"\x00\r\n\r\n",
        b"POST /v1/check HTTP/1.1\r\nHost: x\r\n" + last_name + b" : y\r\n\r\n",
        b"P" + nir + b" / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: " + nir + b"x\r\n\r\n",
    ):
        # aiohttp answers these itself, before any middleware (its page quotes the bad
        # line back to the sender); what matters here is that its log entry does not.
        assert b" 400 " in (await raw_request(client, garbage)).split(b"\r\n", 1)[0]
    ndjson_body = b"".join(json.dumps({"ref": i, **p}).encode() + b"\n"
                           for i, p in enumerate((*PEOPLE, TYPO)))
    ndjson_body += b'{"ref": "broken", "nir": "' + MARIE["nir"].encode() + b'\n'
    response = await client.post("/v1/check/batch", data=ndjson_body, headers={
        **bearer(token), "Content-Type": "application/x-ndjson"})
    await response.read()
    csv_body = "ref;nir;nom;prenom;date_naissance\n" + "".join(
        f"{i};{p['nir']};{p['last_name']};{p['first_name']};{p['birth_date']}\n"
        for i, p in enumerate((*PEOPLE, TYPO)))
    response = await client.post("/v1/check/batch", data=csv_body.encode(), headers={
        **bearer(token), "Content-Type": "text/csv"})
    await response.read()
    headerless = "".join(f"{p['nir']};{p['last_name']};{p['birth_date']}\n" for p in PEOPLE)
    await client.post("/v1/check/batch", data=headerless.encode(), headers={
        **bearer(token), "Content-Type": "text/csv"})


async def test_logs_hold_no_identifier(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings],
    crafted: Crafted, captured_log: io.StringIO
) -> None:
    settings = make_settings(index_dir=crafted.index_dir, pepper_file=crafted.pepper_file,
                             anon_rate=1.0, anon_burst=12)
    store = KeyStore(settings.keys_db)
    try:
        _, token = store.create("Logged insurer")
    finally:
        store.close()
    client = await aiohttp_client(create_app(settings))
    await exercise(client, token)
    await client.close()
    text = captured_log.getvalue()
    entries = [orjson.loads(line) for line in text.splitlines()]
    requests = [e for e in entries if e["msg"] == "request"]
    assert len(requests) >= 25
    statuses = {e["status"] for e in requests}
    assert {200, 400, 401, 404, 405, 413, 415, 422, 429} <= statuses
    for entry in requests:
        assert {"ts", "level", "request_id", "route", "method", "status",
                "duration_ms"} <= set(entry)
        assert entry["route"] in {"/v1/check", "/v1/check/batch", "/", "unmatched"}
    assert any(e["msg"] == "index loaded" for e in entries)
    assert_nothing_of(text, (*PEOPLE, TYPO))
    assert token not in text


async def test_metrics_hold_no_identifier(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings],
    crafted: Crafted
) -> None:
    settings = make_settings(index_dir=crafted.index_dir, pepper_file=crafted.pepper_file,
                             anon_rate=1.0, anon_burst=12)
    store = KeyStore(settings.keys_db)
    try:
        _, token = store.create("Measured insurer")
    finally:
        store.close()
    client = await aiohttp_client(create_app(settings))
    await exercise(client, token)
    text = await (await client.get("/metrics")).text()
    assert "exposure_http_requests_total" in text
    assert_nothing_of(text, (*PEOPLE, TYPO))
    routes = {line.split('route="')[1].split('"')[0] for line in text.splitlines()
              if 'route="' in line}
    assert routes <= {"/v1/check", "/v1/check/batch", "/metrics", "/", "unmatched"}


async def test_error_answers_never_quote_what_was_sent(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings], crafted: Crafted
) -> None:
    settings = make_settings(index_dir=crafted.index_dir, pepper_file=crafted.pepper_file)
    client = await aiohttp_client(create_app(settings))
    bodies = []
    for person in (TYPO, {"nir": MARIE["nir"]}, {"last_name": "Dupont", "birth_date": "x1994"},
                   {**LAETITIA, "birth_date": "2999-01-01"}):
        response = await client.post("/v1/check", json=person)
        assert response.status == 422
        bodies.append(await response.text())
    assert_nothing_of("\n".join(bodies), (TYPO, LAETITIA))
