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
import re
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from service_support import JEAN_PIERRE, LAETITIA, MARIE, STRANGER, Crafted, bearer, build_crafted

from indexer.core.identity import fold_name, normalize_birth_date, normalize_nir
from service.app import create_app
from service.resources.apikeys import KeyStore
from service.resources.logs import (
    PIPE_BUF,
    AccessLog,
    BatchingJsonHandler,
    configure_logging,
    flush_logs,
)
from service.settings import Settings

Client = TestClient[web.Request, web.Application]
PEOPLE = (MARIE, JEAN_PIERRE, LAETITIA, STRANGER)
TYPO = {**MARIE, "nir": "294037512000592", "last_name": "Dupond"}


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    return build_crafted(tmp_path_factory.mktemp("crafted"))


@pytest.fixture
def captured_log() -> Iterator[io.StringIO]:
    """A StringIO for `log_as_served`; the root logger is restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    access = logging.getLogger("aiohttp.access")
    saved_access = access.level
    stream = io.StringIO()
    try:
        yield stream
    finally:
        root.handlers[:], root.level = saved
        access.setLevel(saved_access)


def log_as_served(stream: io.StringIO) -> None:
    """The root logger as `exposure-serve` sets it up, writing into `stream`. Called in
    the test itself: pytest adds its capture handlers to the root logger just before a
    test runs, and with a handler next to ours the access log takes the slow path
    (`logging`, see test_access_lines_go_through_logging_under_another_set_up)."""
    configure_logging("DEBUG", stream)


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
    log_as_served(captured_log)
    client = await aiohttp_client(create_app(settings))
    await exercise(client, token)
    await client.close()  # the app's cleanup writes the access lines still waiting
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


async def test_access_lines_wait_in_memory_and_keep_their_order(
    captured_log: io.StringIO
) -> None:
    """An access line is held (no write per request) until a batch is written: before
    any other record, which therefore comes after it, and by `flush_logs` at the end."""
    log_as_served(captured_log)
    access = AccessLog(logging.getLogger("exposure.http"))
    access.request("rid-1", "/v1/check", "POST", 200, 0.25)
    access.request("rid-2", "/v1/check", "POST", 422, 0.125)
    assert captured_log.getvalue() == ""  # nothing awaited: the batch timer has not run
    logging.getLogger("exposure.app").warning("something else", extra={"count": 3})
    access.request("rid-3", "/healthz", "GET", 200, 0.01)
    lines = [orjson.loads(line) for line in captured_log.getvalue().splitlines()]
    assert [e.get("request_id", e["msg"]) for e in lines] == ["rid-1", "rid-2",
                                                              "something else"]
    flush_logs()
    lines = [orjson.loads(line) for line in captured_log.getvalue().splitlines()]
    assert [e.get("request_id") for e in lines][-1] == "rid-3"


async def test_access_lines_have_the_fields_of_a_log_record(
    captured_log: io.StringIO
) -> None:
    """The fast path writes what `log.info("request", extra=...)` through JsonFormatter
    would: the same fields in the same order, the same values."""
    fields = {"request_id": "rid-9", "route": "/v1/check", "method": "POST", "status": 200,
              "duration_ms": 1.5}
    log_as_served(captured_log)
    AccessLog(logging.getLogger("exposure.http")).request(**fields)
    logging.getLogger("exposure.http").info("request", extra=fields)
    fast, formatted = (orjson.loads(line) for line in captured_log.getvalue().splitlines())
    assert list(fast) == list(formatted)
    assert {**fast, "ts": None} == {**formatted, "ts": None}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fast["ts"])


async def test_a_batch_is_written_when_full_or_when_its_timer_fires() -> None:
    stream = io.StringIO()
    handler = BatchingJsonHandler(stream, flush_seconds=0.0, flush_lines=3)
    entry = (0.0, "exposure.http", "rid", "/healthz", "GET", 200, 0.1)
    for _ in range(3):
        handler.add_access(entry)
    assert stream.getvalue().count("\n") == 3  # full: written at once
    handler.add_access(entry)
    assert stream.getvalue().count("\n") == 3
    for _ in range(3):  # the timer (due at once) runs in the next iterations of the loop
        await asyncio.sleep(0)
    assert stream.getvalue().count("\n") == 4
    assert orjson.loads(stream.getvalue().splitlines()[0])["ts"] == "1970-01-01T00:00:00.000Z"


async def test_access_lines_go_through_logging_under_another_set_up(
    captured_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    """With a handler next to ours (here pytest's capture), the fast path would hide the
    lines from it: they go through `logging` then."""
    log_as_served(captured_log)
    logging.getLogger().addHandler(caplog.handler)
    try:
        AccessLog(logging.getLogger("exposure.http")).request("rid-5", "/", "GET", 200, 0.5)
    finally:
        logging.getLogger().removeHandler(caplog.handler)
    assert [getattr(r, "request_id", None) for r in caplog.records] == ["rid-5"]
    assert '"rid-5"' in captured_log.getvalue()


class _FullDisk(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")


async def test_a_log_that_cannot_be_written_does_not_fail_the_request(
    capsys: pytest.CaptureFixture[str]
) -> None:
    handler = BatchingJsonHandler(_FullDisk(), flush_lines=1)
    handler.add_access((0.0, "exposure.http", "rid", "/healthz", "GET", 200, 0.1))  # no raise
    handler.flush()
    assert "No space left on device" in capsys.readouterr().err


class _Pipe(io.StringIO):
    """A stream that records each write, as a pipe would receive them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


async def test_a_batch_goes_out_in_writes_a_pipe_keeps_whole() -> None:
    """Workers share stderr: over a pipe, only writes of up to PIPE_BUF bytes are kept
    whole, so a batch is cut there, and only between lines."""
    stream = _Pipe()
    handler = BatchingJsonHandler(stream, flush_lines=10_000)
    entry = (0.0, "exposure.http", "rid-\u00e9\u2028", "/v1/check", "POST", 200, 0.1)
    for _ in range(500):
        handler.add_access(entry)
    handler.flush()
    assert len(stream.writes) > 1
    assert all(len(w.encode()) <= PIPE_BUF and w.endswith("\n") for w in stream.writes)
    lines = stream.getvalue().split("\n")[:-1]
    assert len(lines) == 500
    assert all(orjson.loads(line)["request_id"] == "rid-\u00e9\u2028" for line in lines)
