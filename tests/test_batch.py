"""`POST /v1/check/batch`: NDJSON and CSV in, NDJSON streamed out, one line per line.

The ground truth test sends the synthetic insurer's whole member file and compares
every answer with the generator's own record of who is in the breach.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import random
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import Breach, agrees_with_ground_truth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_support import (
    JEAN_PIERRE,
    LAETITIA,
    MARIE,
    STRANGER,
    Crafted,
    bearer,
    build_crafted,
    ndjson,
    problem,
    random_values,
    totals,
)

from service.app import create_app
from service.errors import PayloadTooLarge
from service.resources.apikeys import KeyStore
from service.settings import Settings
from service.views.batch import TOO_LONG, Line, _lines

Client = TestClient[web.Request, web.Application]
NDJSON = "application/x-ndjson"
FIELDS = ("nir", "birth_date", "last_name", "first_name")


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    return build_crafted(tmp_path_factory.mktemp("crafted"))


@pytest.fixture
def crafted_settings(make_settings: Callable[..., Settings], crafted: Crafted) -> Settings:
    return make_settings(index_dir=crafted.index_dir, pepper_file=crafted.pepper_file)


@pytest.fixture
async def crafted_client(aiohttp_client: Callable[..., Any], crafted_settings: Settings) -> Client:
    client: Client = await aiohttp_client(create_app(crafted_settings))
    return client


@pytest.fixture
def token(crafted_settings: Settings) -> str:
    store = KeyStore(crafted_settings.keys_db)
    try:
        return store.create("Batch insurer")[1]
    finally:
        store.close()


async def send(client: Client, token: str, body: Any,
               content_type: str = NDJSON) -> list[dict[str, Any]]:
    response = await client.post("/v1/check/batch", data=body, headers={
        **bearer(token), "Content-Type": content_type})
    return await ndjson(response)


def jsonl(*objects: Any) -> bytes:
    return b"".join(json.dumps(o, ensure_ascii=False).encode() + b"\n" for o in objects)


def sources(answer: dict[str, Any]) -> list[str]:
    return [s["id"] for s in answer["sources"]]


# --------------------------------------------------------------------- NDJSON


async def test_ndjson_lines_are_answered_in_order_with_their_ref(
    crafted_client: Client, token: str
) -> None:
    body = jsonl({"ref": "m-1", **MARIE}, {"ref": 2, **STRANGER},
                 {"ref": "m-3", **LAETITIA}, {**JEAN_PIERRE})
    *answers, summary = await send(crafted_client, token, body)
    assert [a["line"] for a in answers] == [1, 2, 3, 4]
    assert [a["ref"] for a in answers] == ["m-1", 2, "m-3", None]
    assert answers[0]["match"] == "strong"
    assert sources(answers[0]) == ["alpha-2024", "beta-2024"]
    assert answers[0]["sources"][1]["matched_on"] == ["last_name", "first_name", "birth_date"]
    assert answers[1] == {"line": 2, "ref": 2, "found": False, "match": None, "sources": []}
    assert sources(answers[2]) == ["beta-2024"]
    assert answers[3]["match"] == "strong"
    assert totals(summary) == {"lines": 4, "found": 3, "errors": 0}


async def test_answers_never_echo_an_identifier(crafted_client: Client, token: str) -> None:
    body = jsonl({"ref": "r1", **MARIE}, {"ref": "r2", **{**MARIE, "nir": "294037512000592"}})
    raw = json.dumps(await send(crafted_client, token, body), ensure_ascii=False)
    for value in MARIE.values():
        assert value not in raw
        assert value.upper() not in raw


async def test_a_bad_line_gets_an_error_line_and_the_batch_goes_on(
    crafted_client: Client, token: str
) -> None:
    body = b"".join([
        jsonl({"ref": "ok-1", **MARIE}),
        b'{"ref": "broken", "nir": \n',
        b'["not", "an", "object"]\n',
        jsonl({"ref": "bad-nir", **{**MARIE, "nir": "294037512000592"}}),
        jsonl({"ref": "incomplete", "nir": MARIE["nir"]}),
        jsonl({"ref": "wrong-type", "nir": 294037512000591, "birth_date": "1994-03-15"}),
        b"[" * 3000 + b"]" * 3000 + b"\n",
        jsonl({"ref": "ok-2", **STRANGER}),
    ])
    *answers, summary = await send(crafted_client, token, body)
    assert [a["line"] for a in answers] == list(range(1, 9))
    assert answers[0]["found"] is True and answers[7]["found"] is False
    errors = {a["line"]: a for a in answers if "error" in a}
    assert set(errors) == {2, 3, 4, 5, 6, 7}
    assert errors[2]["error"]["code"] == "invalid_line"
    assert errors[2]["ref"] is None  # the line could not be read: its ref is unknown
    assert errors[3]["error"]["code"] == "invalid_line"
    assert errors[4] == {"line": 4, "ref": "bad-nir", "error": {
        "field": "nir", "code": "invalid_checksum", "message": errors[4]["error"]["message"]}}
    assert errors[5]["error"]["field"] == "birth_date"
    assert errors[6]["error"]["code"] == "invalid_type"
    assert totals(summary) == {"lines": 8, "found": 1, "errors": 6}


@pytest.mark.parametrize(("ref", "echoed"), [
    ("m-" + "x" * 126, "m-" + "x" * 126),
    (123456, 123456),
    (12.5, 12.5),
    ("", ""),
])
async def test_refs_are_echoed_as_given(
    crafted_client: Client, token: str, ref: Any, echoed: Any
) -> None:
    answer, _ = await send(crafted_client, token, jsonl({"ref": ref, **STRANGER}))
    assert answer["ref"] == echoed
    assert answer["found"] is False


@pytest.mark.parametrize("ref", ["x" * 129, True, ["a"], {"id": 1}])
async def test_a_ref_that_cannot_be_echoed_makes_an_error_line(
    crafted_client: Client, token: str, ref: Any
) -> None:
    answer, summary = await send(crafted_client, token, jsonl({"ref": ref, **MARIE}))
    assert answer["error"]["code"] == "invalid_ref"
    assert answer["ref"] is None
    assert summary["summary"]["errors"] == 1


@pytest.mark.parametrize(("written", "echoed"), [
    (b"1" * 201, None),  # read as the float 1e+200: its text was short
    (b"1." + b"0" * 127, None),  # 129 characters
    (b"123456789012345678901234567890", b"123456789012345678901234567890"),  # exactly
    (b"1e5", b"1e5"),
    (b"-12.50", b"-12.50"),
])
async def test_a_numeric_ref_is_judged_and_echoed_as_written(
    crafted_client: Client, token: str, written: bytes, echoed: bytes | None
) -> None:
    # Issue 14 (7): a 201-digit numeric ref came back as 1e+200 instead of an error.
    line = b'{"ref": ' + written + b', "nir": "' + STRANGER["nir"].encode() + \
        b'", "birth_date": "' + STRANGER["birth_date"].encode() + b'"}\n'
    response = await crafted_client.post("/v1/check/batch", data=line, headers={
        **bearer(token), "Content-Type": NDJSON})
    raw = (await response.read()).split(b"\n")[0]
    if echoed is None:
        assert orjson.loads(raw)["error"]["code"] == "invalid_ref"
        assert b"1e+200" not in raw
    else:
        assert raw.startswith(b'{"line":1,"ref":' + echoed + b",")


async def test_ref_error_comes_before_field_errors(crafted_client: Client, token: str) -> None:
    body = jsonl({"ref": "x" * 200, "nir": "nonsense"})
    answer, summary = await send(crafted_client, token, body)
    assert "error" in answer
    assert answer["ref"] is None
    assert summary["summary"]["errors"] == 1


EMPTY_SUMMARY = {"lines": 0, "found": 0, "errors": 0, "strong": 0, "weak": 0, "similar": 0}


async def test_empty_body_gives_only_a_summary(crafted_client: Client, token: str) -> None:
    for content_type in (NDJSON, "text/csv"):
        assert await send(crafted_client, token, b"", content_type) == [
            {"summary": EMPTY_SUMMARY}]
    assert await send(crafted_client, token, b"\n\r\n  \n") == [{"summary": EMPTY_SUMMARY}]


async def test_last_line_without_newline_is_answered(crafted_client: Client, token: str) -> None:
    body = jsonl({"ref": "a", **STRANGER}) + json.dumps({"ref": "b", **MARIE}).encode()
    *answers, summary = await send(crafted_client, token, body)
    assert [a["ref"] for a in answers] == ["a", "b"]
    assert answers[1]["found"] is True
    assert summary["summary"]["lines"] == 2


async def test_crlf_lines_blank_lines_and_a_bom(crafted_client: Client, token: str) -> None:
    body = ("\ufeff" + json.dumps({"ref": "a", **MARIE}) + "\r\n\r\n"
            + json.dumps({"ref": "b", **LAETITIA}, ensure_ascii=False) + "\r\n").encode()
    *answers, summary = await send(crafted_client, token, body)
    assert [(a["line"], a["ref"], a["found"]) for a in answers] == [(1, "a", True),
                                                                   (2, "b", True)]
    assert totals(summary) == {"lines": 2, "found": 2, "errors": 0}


async def test_a_cp1252_line_is_read(crafted_client: Client, token: str) -> None:
    line = json.dumps({"ref": "w", **LAETITIA, "first_name": "Lætitia",
                       "last_name": "D’Artagnan"}, ensure_ascii=False)
    body = jsonl({"ref": "u", **STRANGER}) + line.encode("cp1252") + b"\n"
    *answers, _ = await send(crafted_client, token, body)
    assert answers[1]["ref"] == "w"
    assert answers[1]["found"] is True


async def test_body_streamed_in_tiny_pieces(crafted_client: Client, token: str) -> None:
    body = jsonl(*({"ref": f"r{i}", **(MARIE if i % 2 else STRANGER)} for i in range(50)))

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 7):
            yield body[start:start + 7]
            await asyncio.sleep(0)

    *answers, summary = await send(crafted_client, token, pieces())
    assert [a["ref"] for a in answers] == [f"r{i}" for i in range(50)]
    assert totals(summary) == {"lines": 50, "found": 25, "errors": 0}


async def test_chunks_are_looked_up_in_order(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings],
    crafted: Crafted, token: str
) -> None:
    settings = make_settings(index_dir=crafted.index_dir, pepper_file=crafted.pepper_file,
                             batch_chunk_lines=3)
    client = await aiohttp_client(create_app(settings))
    people = [MARIE, STRANGER, LAETITIA, JEAN_PIERRE] * 5
    *answers, _ = await send(client, token, jsonl(*({"ref": i, **p}
                                                    for i, p in enumerate(people))))
    assert [a["ref"] for a in answers] == list(range(20))
    assert [a["found"] for a in answers] == [p is not STRANGER for p in people]


# --------------------------------------------------------------------- long lines, big bodies


async def test_a_line_beyond_any_record_is_an_error_line(crafted_client: Client,
                                                          token: str) -> None:
    long_line = b'{"ref": "long", "nir": "' + b"1" * (200 * 1024) + b'"}\n'
    body = jsonl({"ref": "a", **MARIE}) + long_line + jsonl({"ref": "c", **LAETITIA})
    *answers, summary = await send(crafted_client, token, body)
    assert [a["line"] for a in answers] == [1, 2, 3]
    assert answers[1]["error"]["code"] == "line_too_long"
    assert answers[1]["ref"] is None
    assert answers[2]["found"] is True
    assert totals(summary) == {"lines": 3, "found": 2, "errors": 1}


async def test_a_huge_line_is_skipped_as_it_streams_not_buffered(
    crafted_client: Client, token: str
) -> None:
    size = 24 << 20
    piece = b"x" * (64 << 10)

    async def body() -> AsyncIterator[bytes]:
        yield b'{"ref": "huge", "nir": "'
        for _ in range(size // len(piece)):
            yield piece
        yield b'"}\n' + jsonl({"ref": "after", **MARIE})

    tracemalloc.start()
    try:
        *answers, summary = await send(crafted_client, token, body())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answers[0]["error"]["code"] == "line_too_long"
    assert answers[1]["ref"] == "after" and answers[1]["found"] is True
    # Client and server share this process: a buffered line alone would be `size`.
    assert peak < size // 4


async def test_declared_body_over_the_limit_is_413(
    aiohttp_client: Callable[..., Any], crafted_settings: Settings, token: str
) -> None:
    from dataclasses import replace

    client = await aiohttp_client(create_app(replace(crafted_settings, max_batch_bytes=1000)))
    body = jsonl(*({"ref": i, **STRANGER} for i in range(30)))
    response = await client.post("/v1/check/batch", data=body, headers={
        **bearer(token), "Content-Type": NDJSON})
    await problem(response, 413)


async def test_streamed_body_over_the_limit_ends_with_an_error_line(
    aiohttp_client: Callable[..., Any], crafted_settings: Settings, token: str
) -> None:
    from dataclasses import replace

    client = await aiohttp_client(create_app(replace(crafted_settings, max_batch_bytes=4000)))
    line = jsonl({"ref": "r", **STRANGER})

    async def body() -> AsyncIterator[bytes]:
        for _ in range(200):
            yield line
            await asyncio.sleep(0)

    *answers, summary = await send(client, token, body())
    assert answers[-1]["error"]["code"] == "body_too_large"
    assert answers[-1]["line"] == len(answers)
    assert summary["summary"]["lines"] == len(answers)
    assert summary["summary"]["errors"] == 1


# --------------------------------------------------------------------- CSV


def csv_body(header: list[str], rows: list[list[str]], delimiter: str,
             encoding: str = "utf-8", newline: str = "\n") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def rows_of(*people: dict[str, str]) -> list[list[str]]:
    return [[f"ref-{i}", p["nir"], p["last_name"], p["first_name"], p["birth_date"]]
            for i, p in enumerate(people)]


@pytest.mark.parametrize(("header", "delimiter", "encoding", "newline"), [
    (["ref", "nir", "last_name", "first_name", "birth_date"], ",", "utf-8", "\n"),
    (["REF", "NIR", "NOM", "PRENOM", "DATE_NAISSANCE"], ";", "utf-8", "\r\n"),
    (["Référence", "Numéro de sécurité sociale", "Nom de naissance", "Prénom",
      "Date de naissance"], ";", "cp1252", "\r\n"),
    (["id", "ssn", "surname", "given_name", "date_of_birth"], "\t", "utf-8", "\n"),
])
async def test_csv_with_french_and_english_headers(
    crafted_client: Client, token: str, header: list[str], delimiter: str, encoding: str,
    newline: str
) -> None:
    body = csv_body(header, rows_of(MARIE, STRANGER, LAETITIA), delimiter, encoding, newline)
    *answers, summary = await send(crafted_client, token, body, "text/csv")
    assert [a["ref"] for a in answers] == ["ref-0", "ref-1", "ref-2"]
    assert [a["line"] for a in answers] == [1, 2, 3]  # the header is not counted
    assert [a["found"] for a in answers] == [True, False, True]
    assert answers[0]["match"] == "strong"
    assert totals(summary) == {"lines": 3, "found": 2, "errors": 0}


async def test_csv_with_bom_blank_lines_no_final_newline_and_a_bad_row(
    crafted_client: Client, token: str
) -> None:
    body = ("\ufeffref;nir;birth_date\r\n"
            "a;294037512000591;15/03/1994\r\n"
            "\r\n"
            "b;294037512000592;15/03/1994\r\n"
            'c;"253072B07300470";1953-07-20').encode()
    *answers, summary = await send(crafted_client, token, body, "text/csv; charset=utf-8")
    assert [(a["line"], a["ref"]) for a in answers] == [(1, "a"), (2, "b"), (3, "c")]
    assert answers[1]["error"]["code"] == "invalid_checksum"
    assert answers[2]["found"] is True
    assert totals(summary) == {"lines": 3, "found": 2, "errors": 1}


async def test_csv_quoted_fields_may_hold_line_breaks(crafted_client: Client, token: str) -> None:
    # Issue 14 (7): a newline inside a quoted field made two answer lines, and the
    # second echoed a fragment of a name (`PONT"`) as its ref.
    body = (b'ref,nir,birth_date,last_name,first_name\r\n'
            b'"a","294037512000591","1994-03-15","DU\r\nPONT","Marie"\r\n'
            b'b,,1994-03-15,"Dupont","Marie\nClaire"\r\n'
            b'"c\n2",294037512000592,15/03/1994,,\r\n'
            b'd,253072B07300470,1953-07-20,,\r\n')
    *answers, summary = await send(crafted_client, token, body, "text/csv")
    assert [(a["line"], a["ref"]) for a in answers] == [
        (1, "a"), (2, "b"), (3, "c\n2"), (4, "d")]
    assert answers[0]["found"] is True  # the strong key matched; the name is odd
    assert answers[2]["error"]["code"] == "invalid_checksum"
    assert answers[3]["found"] is True
    assert summary["summary"]["lines"] == 4
    assert "PONT" not in json.dumps(answers)


@pytest.mark.parametrize("tail", [
    'z,294037512000591,1994-03-15,"DUPONT\r\nafter,the,quote\r\n',  # never closed
    'z,294037512000591,1994-03-15,"' + "D" * 70_000 + '\r\nPONT",x\r\n',  # over-long
])
async def test_a_csv_record_that_never_ends_is_one_error_quoting_nothing(
    crafted_client: Client, token: str, tail: str
) -> None:
    body = ("ref,nir,birth_date,last_name\r\na,294037512000591,1994-03-15,Dupont\r\n"
            + tail).encode()
    *answers, summary = await send(crafted_client, token, body, "text/csv")
    assert answers[0]["ref"] == "a"
    assert [a["error"]["code"] for a in answers[1:]] in (["unclosed_quote"],
                                                       ["line_too_long"])
    assert all(a["ref"] is None for a in answers[1:])
    assert "PONT" not in json.dumps(answers) and "after" not in json.dumps(answers)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(
    st.text(st.sampled_from('ab,;"\n\r '), max_size=8),
    st.text(st.sampled_from('Dupont,"\n\r -'), max_size=12)), min_size=1, max_size=6))
def test_csv_records_are_read_as_csv_reads_them(
    crafted_settings: Settings, token: str, rows: list[tuple[str, str]]
) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["ref", "last_name", "first_name", "birth_date"])
    writer.writerows([ref, name, "Marie", "1994-03-15"] for ref, name in rows)
    body = out.getvalue().encode()
    expected = [ref.strip() for ref, _ in rows]

    async def run() -> list[dict[str, Any]]:
        app = create_app(crafted_settings)
        async with TestClient(TestServer(app)) as client:
            return await send(client, token, body, "text/csv")

    *answers, summary = asyncio.run(run())
    assert summary["summary"]["lines"] == len(answers) == len(rows)
    assert [a["ref"] for a in answers] == expected


async def test_csv_names_only_and_short_rows(crafted_client: Client, token: str) -> None:
    body = (b"ref,last_name,first_name,birth_date\n"
            b"a,Dupont,Marie,1994-03-15\n"
            b"b,Dupont\n")
    *answers, _ = await send(crafted_client, token, body, "text/csv")
    assert answers[0]["match"] == "weak"
    assert answers[1]["error"]["field"] in ("birth_date", "first_name")


async def test_csv_ref_too_long_is_an_error_line(crafted_client: Client, token: str) -> None:
    body = csv_body(["ref", "nir", "birth_date"],
                    [["r" * 129, MARIE["nir"], MARIE["birth_date"]]], ",")
    answer, _ = await send(crafted_client, token, body, "text/csv")
    assert answer["error"]["code"] == "invalid_ref"


@pytest.mark.parametrize("header", [
    "colonne1;colonne2;colonne3",
    "294037512000591;DUPONT;MARIE;15/03/1994",  # a body sent without its header row
    "ref;comment",
])
async def test_csv_header_without_usable_columns_is_422(
    crafted_client: Client, token: str, header: str
) -> None:
    body = (header + "\n" + "a;294037512000591;15/03/1994\n").encode()
    response = await crafted_client.post("/v1/check/batch", data=body, headers={
        **bearer(token), "Content-Type": "text/csv"})
    problem_body = await problem(response, 422)
    assert problem_body["errors"][0]["code"] == "invalid_header"
    text = json.dumps(problem_body)
    assert "294037512000591" not in text and "DUPONT" not in text


async def test_csv_header_missing_one_column_names_it(crafted_client: Client, token: str) -> None:
    response = await crafted_client.post(
        "/v1/check/batch", data=b"ref;nom;prenom\na;Dupont;Marie\n",
        headers={**bearer(token), "Content-Type": "text/csv"})
    problem_body = await problem(response, 422)
    assert [(e["field"], e["code"]) for e in problem_body["errors"]] == [
        ("birth_date", "missing_column")]


# --------------------------------------------------------------------- auth, types, limits


async def test_batch_needs_a_live_key(crafted_client: Client, token: str,
                                      crafted_settings: Settings) -> None:
    body = jsonl({"ref": "a", **MARIE})
    for headers in ({}, bearer("exk_unknown"), {"Authorization": "Basic abc"}):
        response = await crafted_client.post("/v1/check/batch", data=body, headers={
            **headers, "Content-Type": NDJSON})
        await problem(response, 401)
    store = KeyStore(crafted_settings.keys_db)
    try:
        (key, _, _), = store.all_keys()
        store.revoke(key.id)
    finally:
        store.close()
    response = await crafted_client.post("/v1/check/batch", data=body, headers={
        **bearer(token), "Content-Type": NDJSON})
    await problem(response, 401)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain",
                                          "multipart/form-data; boundary=x"])
async def test_batch_of_another_type_is_415(crafted_client: Client, token: str,
                                            content_type: str) -> None:
    response = await crafted_client.post("/v1/check/batch", data=jsonl(MARIE), headers={
        **bearer(token), "Content-Type": content_type})
    await problem(response, 415)


async def test_a_key_out_of_records_gets_429(
    crafted_client: Client, crafted_settings: Settings
) -> None:
    store = KeyStore(crafted_settings.keys_db)
    try:
        _, small = store.create("Tiny insurer", rate_per_minute=2)
    finally:
        store.close()
    answers = await send(crafted_client, small, jsonl({"ref": 1, **MARIE}, {"ref": 2, **MARIE}))
    assert answers[-1]["summary"]["lines"] == 2
    response = await crafted_client.post("/v1/check/batch", data=jsonl(MARIE), headers={
        **bearer(small), "Content-Type": NDJSON})
    await problem(response, 429)
    assert int(response.headers["Retry-After"]) >= 1


async def test_a_chunk_larger_than_the_keys_burst_is_paced_not_stuck(
    crafted_client: Client, crafted_settings: Settings
) -> None:
    # 120 records a minute: the 121st line waits half a second for its unit. A chunk of
    # 121 lines used to ask the bucket for more than it can ever hold, and hang.
    store = KeyStore(crafted_settings.keys_db)
    try:
        _, paced = store.create("Paced insurer", rate_per_minute=120)
    finally:
        store.close()
    body = jsonl(*({"ref": i, **STRANGER} for i in range(121)))
    *answers, summary = await send(crafted_client, paced, body)
    assert len(answers) == 121
    assert summary["summary"]["lines"] == 121


# --------------------------------------------------------------------- ground truth


async def test_every_member_matches_the_ground_truth(
    client: Client, api_key: str, breach: Breach
) -> None:
    raw = (breach.dir / "members.csv").read_bytes()
    *answers, summary = await send(client, api_key, raw, "text/csv")
    expected = breach.expected()
    assert len(answers) == len(expected) == summary["summary"]["lines"]
    assert summary["summary"]["errors"] == sum("error" in a for a in answers)
    mismatches = []
    for answer in answers:
        want = expected[answer["ref"]]
        got = (bool(answer.get("found")), answer.get("match"),
               "|".join(sources(answer)) if "sources" in answer else "")
        if not agrees_with_ground_truth(want, *got, refused="error" in answer):
            mismatches.append((answer["ref"], got, want))
    assert not mismatches, mismatches[:5]
    assert summary["summary"]["found"] == sum(bool(a.get("found")) for a in answers)


async def test_ground_truth_over_ndjson_too(client: Client, api_key: str,
                                            breach: Breach) -> None:
    members = breach.members()
    body = jsonl(*({"ref": m["ref"], **{k: m[k] for k in FIELDS}} for m in members))
    *answers, _ = await send(client, api_key, body)
    expected = breach.expected()
    assert [a["ref"] for a in answers] == [m["ref"] for m in members]
    for answer in answers:
        listed = "|".join(sources(answer)) if "sources" in answer else ""
        assert agrees_with_ground_truth(
            expected[answer["ref"]], bool(answer.get("found")), answer.get("match"), listed,
            refused="error" in answer), answer["ref"]


async def test_random_lines_each_get_an_answer(crafted_client: Client, token: str) -> None:
    rng = random.Random(7)
    objects = [random_values(rng) for _ in range(300)]
    *answers, summary = await send(crafted_client, token, jsonl(*objects))
    assert [a["line"] for a in answers] == list(range(1, 301))
    assert summary["summary"]["lines"] == 300
    assert summary["summary"]["errors"] == sum("error" in a for a in answers)


async def test_answer_lines_are_the_json_of_their_objects(
    crafted_client: Client, token: str
) -> None:
    """Verdict lines are put together from pre-encoded parts: each must be, byte for
    byte, what encoding its object gives (orjson keeps the order of the keys)."""
    rng = random.Random(11)
    people = [MARIE, STRANGER, LAETITIA, JEAN_PIERRE]
    objects = [{"ref": rng.choice(["r", "é\"\\\n", 12, 12.5, None, ""]), **rng.choice(people)}
               if rng.random() < 0.7 else random_values(rng) for _ in range(400)]
    response = await crafted_client.post("/v1/check/batch", data=jsonl(*objects), headers={
        **bearer(token), "Content-Type": NDJSON})
    raw = await response.read()
    lines = raw.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 402
    for line in lines[:-1]:
        assert orjson.dumps(orjson.loads(line)) == line


class _Body:
    """A request body arriving in the given pieces (what `_lines` reads of a request)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.content = self
        self._pieces = iter(pieces)

    async def readany(self) -> bytes:
        return next(self._pieces, b"")


def _split_whole(body: bytes, max_line: int) -> list[Line]:
    """The lines of a body read at once: what `_lines` must yield however it streams."""
    *lines, last = body.split(b"\n")
    if last:  # the last line, without its newline
        lines.append(last)
    return [TOO_LONG if len(line) > max_line else line for line in lines]


@settings(deadline=None, max_examples=300)
@given(body=st.lists(st.sampled_from([b"\n", b"ab", b"abcdefghij", b"{}", b"\r\n", b"x" * 25]))
       .map(b"".join), cuts=st.lists(st.integers(0, 200)), max_line=st.integers(1, 12))
def test_lines_are_cut_alike_however_the_body_arrives(
    body: bytes, cuts: list[int], max_line: int
) -> None:
    bounds = sorted({0, len(body), *(cut for cut in cuts if cut < len(body))})
    pieces = [body[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]

    async def read_all() -> list[Line]:
        batches = [batch async for batch in _lines(_Body(pieces), max_line, 1 << 20)]
        assert all(batches)
        return [line for batch in batches for line in batch]

    assert asyncio.run(read_all()) == _split_whole(body, max_line)


async def test_the_body_limit_counts_every_piece() -> None:
    with pytest.raises(PayloadTooLarge):
        async for _ in _lines(_Body([b"a\n" * 10, b"b\n"]), 10, 20):
            pass


async def test_a_client_that_leaves_mid_stream_is_no_error(
    crafted_client: Client, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    gate = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield jsonl({"ref": "first", **MARIE})
        await gate.wait()
        yield jsonl({"ref": "never", **MARIE})

    response = await crafted_client.post("/v1/check/batch", data=body(), headers={
        **bearer(token), "Content-Type": NDJSON})
    assert json.loads(await response.content.readline())["ref"] == "first"
    response.close()  # drops the connection with the body still open
    gate.set()
    await asyncio.sleep(0.5)  # let the server notice
    assert (await crafted_client.get("/healthz")).status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


REFS = st.one_of(st.text(max_size=20), st.text(alphabet="ab-_ 0\"\\\n\x7f~", max_size=8),
                 st.integers(-10**6, 10**6), st.none())


@settings(max_examples=300, deadline=None)
@given(st.lists(REFS, max_size=30) | st.lists(st.from_regex(r"[ -~]{0,12}", fullmatch=True),
                                                max_size=30))
def test_a_chunk_of_refs_is_encoded_as_dumps_encodes_each(refs: list[Any]) -> None:
    """The chunk's refs in one pass when all are plain strings, one dumps() each
    otherwise: every answer line byte for byte what dumps() of its ref gives."""
    from service.views.batch import _ANSWER, _encoded_refs

    template, encoded = _encoded_refs(refs, orjson.dumps)
    assert [template % (7, ref, b"}") for ref in encoded] == [
        _ANSWER % (7, orjson.dumps(ref), b"}") for ref in refs]


@pytest.mark.parametrize("refs", [
    ["m-1", "m 2", "", "~!#[]{}"],  # plain: encoded in one pass
    ["m-1", 'say "hi"', "back\\slash", "é", None, 42],  # not: one dumps() each
])
async def test_answer_lines_are_the_json_of_line_ref_and_verdict(
    crafted_client: Client, token: str, refs: list[Any]
) -> None:
    body = jsonl(*({"ref": ref, **(MARIE if i % 2 else STRANGER)} for i, ref in enumerate(refs)))
    response = await crafted_client.post("/v1/check/batch", data=body, headers={
        **bearer(token), "Content-Type": NDJSON})
    raw = (await response.read()).split(b"\n")[:len(refs)]
    for number, (line, ref) in enumerate(zip(raw, refs, strict=True), start=1):
        answer = orjson.loads(line)
        assert answer["ref"] == ref
        assert line == orjson.dumps({"line": number, "ref": ref, **{
            k: v for k, v in answer.items() if k not in ("line", "ref")}})
