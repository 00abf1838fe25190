"""`POST /v1/check` and the small JSON routes, through the real app on real indexes.

The answer shape of docs/design.md §5 is checked on a hand-written breach (exact answers),
the equivalences on the synthetic one; then every error status, the limits, and the
routes that are not lookups (/v1/sources, /healthz, /readyz, /metrics).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import Breach
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from service_support import (
    JEAN_PIERRE,
    LAETITIA,
    MARIE,
    STRANGER,
    Crafted,
    bearer,
    build_crafted,
    problem,
    random_values,
)

from service.app import create_app
from service.middleware import SECURITY_HEADERS
from service.resources.apikeys import KeyStore
from service.resources.metrics import LOOKUP_BUCKETS, Metrics
from service.settings import Settings

Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    return build_crafted(tmp_path_factory.mktemp("crafted"))


@pytest.fixture
async def crafted_client(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings], crafted: Crafted
) -> Client:
    settings = make_settings(index_dir=crafted.index_dir, pepper_file=crafted.pepper_file)
    client: Client = await aiohttp_client(create_app(settings))
    return client


async def check(client: Client, body: Any, **kwargs: Any) -> Any:
    response = await client.post("/v1/check", json=body, **kwargs)
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    assert response.content_type == "application/json"
    return await response.json()


# --------------------------------------------------------------------- answer shape


async def test_strong_answer_lists_each_source_with_its_own_key(crafted_client: Client) -> None:
    answer = await check(crafted_client, MARIE)
    assert answer == {
        "found": True,
        "match": "strong",
        "sources": [
            {"id": "alpha-2024", "title": "Alpha", "breach_date": "2024-01-29",
             "matched_on": ["nir", "birth_date"],
             "exposed": ["name", "birth_date", "nir", "insurer", "tp_guarantee"]},
            {"id": "beta-2024", "title": "Beta", "breach_date": "2024-02-05",
             "matched_on": ["last_name", "first_name", "birth_date"],
             "exposed": ["name", "birth_date", "birth_rank", "marital_status"]},
        ],
    }


async def test_weak_answer_when_only_names_are_given(crafted_client: Client) -> None:
    answer = await check(crafted_client, {k: MARIE[k] for k in
                                           ("last_name", "first_name", "birth_date")})
    assert answer["found"] is True
    assert answer["match"] == "weak"
    assert [s["id"] for s in answer["sources"]] == ["alpha-2024", "beta-2024"]
    assert all(s["matched_on"] == ["last_name", "first_name", "birth_date"]
               for s in answer["sources"])


async def test_usage_name_matches_only_the_source_that_has_it(crafted_client: Client) -> None:
    answer = await check(crafted_client, {"last_name": "martin", "first_name": "MARIE",
                                          "birth_date": "15/03/1994"})
    assert answer["match"] == "weak"
    assert [s["id"] for s in answer["sources"]] == ["alpha-2024"]


async def test_exposed_classes_come_in_the_fixed_order(crafted_client: Client) -> None:
    answer = await check(crafted_client, JEAN_PIERRE)
    assert answer["match"] == "strong"
    (source,) = answer["sources"]
    assert source["exposed"] == ["name", "birth_date", "nir", "birth_rank", "insurer",
                                 "marital_status", "tp_guarantee"]


@pytest.mark.parametrize("variant", [
    LAETITIA,
    {"last_name": "D'ARTAGNAN", "first_name": "Lætitia", "birth_date": "1953-07-20"},
    {"last_name": "d artagnan", "first_name": "laetitia", "birth_date": "20-07-1953"},
    {"nir": "2 53 07 2B 073 004 70", "birth_date": "20/07/1953"},
    {"nir": "253072B073004", "birth_date": "1953-07-20"},
])
async def test_typing_variants_find_the_same_person(
    crafted_client: Client, variant: dict[str, str]
) -> None:
    answer = await check(crafted_client, variant)
    assert answer["found"] is True
    assert [s["id"] for s in answer["sources"]] == ["beta-2024"]


async def test_stranger_is_not_found(crafted_client: Client) -> None:
    assert await check(crafted_client, STRANGER) == {"found": False, "match": None, "sources": []}


async def test_blank_fields_count_as_absent(crafted_client: Client) -> None:
    body = {**MARIE, "last_name": "", "first_name": "  "}
    answer = await check(crafted_client, body)
    assert answer["match"] == "strong"
    assert [s["id"] for s in answer["sources"]] == ["alpha-2024"]


async def test_synthetic_members_are_answered_as_the_generator_says(
    client: Client, breach: Breach
) -> None:
    expected = breach.expected()
    members = breach.members()
    weak = next(m for m in members if expected[m["ref"]]["match"] == "weak")
    strong = next(m for m in members if expected[m["ref"]]["match"] == "strong"
                  and "|" in expected[m["ref"]]["sources"])
    for member in (weak, strong):
        fields = {k: member[k] for k in ("nir", "last_name", "first_name", "birth_date")}
        answer = await check(client, fields)
        want = expected[member["ref"]]
        assert answer["match"] == want["match"]
        assert [s["id"] for s in answer["sources"]] == want["sources"].split("|")


# --------------------------------------------------------------------- errors


async def test_malformed_json_is_400(client: Client) -> None:
    response = await client.post("/v1/check", data=b'{"nir": "1', headers={
        "Content-Type": "application/json"})
    body = await problem(response, 400)
    assert "errors" not in body


async def test_invalid_utf8_is_400(client: Client) -> None:
    response = await client.post("/v1/check", data=b'{"last_name": "\xff\xfe"}', headers={
        "Content-Type": "application/json"})
    await problem(response, 400)


async def test_deeply_nested_json_is_400(client: Client) -> None:
    response = await client.post("/v1/check", data=b"[" * 5000 + b"]" * 5000, headers={
        "Content-Type": "application/json"})
    await problem(response, 400)


@pytest.mark.parametrize("body", [b"[]", b'"nir"', b"42", b"null", b""])
async def test_a_body_that_is_not_an_object_is_400(client: Client, body: bytes) -> None:
    response = await client.post("/v1/check", data=body, headers={
        "Content-Type": "application/json"})
    await problem(response, 400)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "application/x-ndjson", None])
async def test_wrong_content_type_is_415(client: Client, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/v1/check", data=json.dumps(MARIE).encode(),
                                 headers=headers, skip_auto_headers=["Content-Type"])
    await problem(response, 415)


async def test_json_with_charset_parameter_is_accepted(client: Client) -> None:
    response = await client.post("/v1/check", data=json.dumps(STRANGER).encode(), headers={
        "Content-Type": "application/json; charset=utf-8"})
    assert response.status == 200


async def test_body_over_16_kib_is_413(client: Client) -> None:
    padding = "x" * (16 * 1024)
    response = await client.post("/v1/check", json={**STRANGER, "padding": padding})
    await problem(response, 413)


async def test_body_of_exactly_16_kib_is_read(client: Client) -> None:
    body = json.dumps({**STRANGER, "padding": ""}).encode()
    body = body[:-2] + b"x" * (16 * 1024 - len(body)) + body[-2:]
    assert len(body) == 16 * 1024
    response = await client.post("/v1/check", data=body, headers={
        "Content-Type": "application/json"})
    assert response.status == 200


async def test_chunked_body_over_16_kib_is_413(client: Client) -> None:
    async def chunks() -> Any:
        yield b'{"nir": "'
        for _ in range(40):
            yield b"1" * 1024
        yield b'"}'

    response = await client.post("/v1/check", data=chunks(), headers={
        "Content-Type": "application/json"})
    await problem(response, 413)


INVALID_FIELDS = [
    ({"nir": "295109912611199", "birth_date": "1995-10-02"}, "nir", "invalid_checksum"),
    ({"nir": "253072C07300443", "birth_date": "1953-07-01"}, "nir", None),
    ({"nir": "185434501234556", "birth_date": "1985-04-01"}, "nir", None),
    ({"nir": "995109912611134", "birth_date": "1995-10-02"}, "nir", None),
    ({"nir": "12345", "birth_date": "1995-10-02"}, "nir", None),
    ({"nir": "294037512000591", "birth_date": "15/03/94"}, "birth_date", None),
    ({"nir": "294037512000591", "birth_date": "2999-01-01"}, "birth_date", None),
    ({"nir": "294037512000591", "birth_date": "1850-01-01"}, "birth_date", None),
    ({"last_name": "Dup0nt", "first_name": "Marie", "birth_date": "1994-03-15"},
     "last_name", None),
    ({"last_name": "Dupont", "first_name": "Marie☃", "birth_date": "1994-03-15"},
     "first_name", None),
    ({"nir": 294037512000591, "birth_date": "1994-03-15"}, "nir", "invalid_type"),
    ({"nir": ["294037512000591"], "birth_date": "1994-03-15"}, "nir", "invalid_type"),
]


@pytest.mark.parametrize(("body", "field", "code"), INVALID_FIELDS)
async def test_invalid_field_is_422_and_never_quoted(
    client: Client, body: dict[str, Any], field: str, code: str | None
) -> None:
    response = await client.post("/v1/check", json=body)
    problem_body = await problem(response, 422)
    errors = problem_body["errors"]
    assert field in [e["field"] for e in errors]
    if code is not None:
        assert code in [e["code"] for e in errors if e["field"] == field]
    text = json.dumps(problem_body, ensure_ascii=False)
    for value in body.values():
        value_text = str(value[0] if isinstance(value, list) else value)
        assert value_text not in text
        assert value_text.upper() not in text
    for error in errors:
        assert set(error) == {"field", "code", "message"}
        assert error["message"]


async def test_a_typo_is_reported_even_when_another_key_is_complete(client: Client) -> None:
    body = {**MARIE, "nir": "294037512000592"}  # names and date still form a weak key
    problem_body = await problem(await client.post("/v1/check", json=body), 422)
    assert [(e["field"], e["code"]) for e in problem_body["errors"]] == [
        ("nir", "invalid_checksum")]


@pytest.mark.parametrize(("body", "fields"), [
    ({}, {"birth_date", "nir"}),
    ({"nir": "294037512000591"}, {"birth_date"}),
    ({"birth_date": "1994-03-15"}, {"nir"}),
    ({"last_name": "Dupont", "birth_date": "1994-03-15"}, {"first_name"}),
    ({"first_name": "Marie", "birth_date": "1994-03-15"}, {"last_name"}),
    ({"unrelated": "x"}, {"birth_date", "nir"}),
])
async def test_incomplete_key_is_422_with_field_errors(
    client: Client, body: dict[str, str], fields: set[str]
) -> None:
    problem_body = await problem(await client.post("/v1/check", json=body), 422)
    assert {e["field"] for e in problem_body["errors"]} == fields


async def test_unknown_route_and_method_are_problems(client: Client) -> None:
    await problem(await client.get("/v1/nothing"), 404)
    response = await client.get("/v1/check")
    await problem(response, 405)
    assert "POST" in response.headers["Allow"]


# --------------------------------------------------------------------- auth and limits


async def test_unknown_or_malformed_key_on_check_is_401(client: Client) -> None:
    for header in ("Bearer exk_not-a-key", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer x" * 40):
        response = await client.post("/v1/check", json=STRANGER,
                                     headers={"Authorization": header})
        await problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_key_with_bytes_that_are_not_utf8_is_401(client: Client) -> None:
    # A raw request: aiohttp's client would not send these bytes in a header.
    body = json.dumps(STRANGER).encode()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"POST /v1/check HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
                 b"Authorization: Bearer exk_\xff\xfe\x80\r\n"
                 b"Content-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"401", status_line
    assert b"application/problem+json" in answer


async def test_revoked_key_on_check_is_401(
    client: Client, settings: Settings, api_key: str
) -> None:
    assert (await client.post("/v1/check", json=STRANGER, headers=bearer(api_key))).status == 200
    store = KeyStore(settings.keys_db)
    try:
        (key, _, _), = store.all_keys()
        assert store.revoke(key.id)
    finally:
        store.close()
    response = await client.post("/v1/check", json=STRANGER, headers=bearer(api_key))
    await problem(response, 401)


async def test_anonymous_limit_gives_429_with_retry_after(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    client = await aiohttp_client(create_app(make_settings(anon_rate=1.0, anon_burst=3)))
    # Every request costs a unit, malformed and invalid ones too.
    assert (await client.post("/v1/check", data=b"{", headers={
        "Content-Type": "application/json"})).status == 400
    assert (await client.post("/v1/check", json={"nir": "1"})).status == 422
    assert (await client.post("/v1/check", json=STRANGER)).status == 200
    response = await client.post("/v1/check", json=STRANGER)
    body = await problem(response, 429)
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert str(retry_after) in body["detail"]
    # Refused requests are counted in the metrics, on the route's template.
    metrics = await (await client.get("/metrics")).text()
    assert 'exposure_rate_limited_total{route="/v1/check"} 1.0' in metrics


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    import ipaddress

    untrusted = await aiohttp_client(create_app(make_settings(anon_rate=1.0, anon_burst=1)))
    for address, status in (("203.0.113.1", 200), ("203.0.113.2", 429)):
        response = await untrusted.post("/v1/check", json=STRANGER,
                                        headers={"X-Forwarded-For": address})
        assert response.status == status
    trusted = await aiohttp_client(create_app(make_settings(
        anon_rate=1.0, anon_burst=1,
        trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")))))
    for address, status in (("203.0.113.1", 200), ("203.0.113.2", 200), ("203.0.113.1", 429),
                            ("not an address", 200), ("also not", 429)):
        response = await trusted.post("/v1/check", json=STRANGER,
                                      headers={"X-Forwarded-For": address})
        assert response.status == status, address


@pytest.mark.parametrize(("prefix", "same_client"), [(64, True), (128, False)])
async def test_ipv6_clients_are_limited_per_prefix(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings], prefix: int,
    same_client: bool,
) -> None:
    # Issue 14 (2): per /128, anyone holding a /64 was unlimited.
    import ipaddress

    client = await aiohttp_client(create_app(make_settings(
        anon_rate=1.0, anon_burst=2, ipv6_prefix=prefix,
        trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")))))
    statuses = []
    for address in ("2001:db8:aa:bb::1", "2001:db8:aa:bb:ffff::2", "2001:DB8:AA:BB:1:2:3:4"):
        response = await client.post("/v1/check", json=STRANGER,
                                     headers={"X-Forwarded-For": address})
        statuses.append(response.status)
    assert statuses == ([200, 200, 429] if same_client else [200, 200, 200])
    # Another /64, and IPv4 (mapped or not), are other clients.
    for address in ("2001:db8:aa:cc::1", "::ffff:198.51.100.9", "198.51.100.10"):
        response = await client.post("/v1/check", json=STRANGER,
                                     headers={"X-Forwarded-For": address})
        assert response.status == 200, address


async def test_bearer_key_on_check_uses_the_keys_own_limit(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(anon_rate=1.0, anon_burst=1)
    store = KeyStore(settings.keys_db)
    try:
        key, token = store.create("Small insurer", rate_per_minute=3)
    finally:
        store.close()
    client = await aiohttp_client(create_app(settings))
    for _ in range(3):
        assert (await client.post("/v1/check", json=STRANGER, headers=bearer(token))).status == 200
    response = await client.post("/v1/check", json=STRANGER, headers=bearer(token))
    await problem(response, 429)
    assert int(response.headers["Retry-After"]) >= 1
    # The anonymous bucket of this address was never touched.
    assert (await client.post("/v1/check", json=STRANGER)).status == 200
    assert (await client.post("/v1/check", json=STRANGER)).status == 429


async def test_unknown_keys_spend_the_anonymous_budget(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    client = await aiohttp_client(create_app(make_settings(anon_rate=1.0, anon_burst=2)))
    for _ in range(2):
        response = await client.post("/v1/check", json=STRANGER,
                                     headers=bearer("exk_guess"))
        assert response.status == 401
    response = await client.post("/v1/check", json=STRANGER, headers=bearer("exk_guess"))
    await problem(response, 429)


# --------------------------------------------------------------------- other routes


async def test_sources_lists_the_breaches_with_counts(crafted_client: Client) -> None:
    response = await crafted_client.get("/v1/sources")
    assert response.status == 200
    body = await response.json()
    assert body["generation"].startswith("gen-")
    by_id = {s["id"]: s for s in body["sources"]}
    assert list(by_id) == ["alpha-2024", "beta-2024"]
    alpha = by_id["alpha-2024"]
    assert (alpha["title"], alpha["breach_date"]) == ("Alpha", "2024-01-29")
    assert alpha["rows"] == 2 and alpha["records_indexed"] == 2
    assert alpha["data_classes"] == ["name", "birth_date", "nir", "birth_rank", "insurer",
                                     "marital_status", "tp_guarantee"]
    assert alpha["class_counts"]["birth_rank"] == 1
    assert by_id["beta-2024"]["data_classes"] == ["name", "birth_date", "nir", "birth_rank",
                                                  "insurer", "marital_status"]


async def test_health_and_readiness(client: Client, breach: Breach) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["status"] == "ok"
    response = await client.get("/readyz")
    assert response.status == 200
    ready = await response.json()
    assert ready["status"] == "ready"
    assert ready["generation"] == (breach.index_dir / "current").resolve().name
    assert ready["fingerprints"] > 0
    assert ready["detail"] is None


async def test_not_ready_without_an_index(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(make_settings(index_dir=tmp_path / "empty")))
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "not_ready"
    assert "no index" in body["detail"]
    await problem(await client.post("/v1/check", json=STRANGER), 503)
    await problem(await client.get("/v1/sources"), 503)


async def test_metrics_expose_requests_latency_bulk_and_index(
    client: Client, api_key: str, breach: Breach
) -> None:
    await check(client, STRANGER)
    await client.post("/v1/check", json={"nir": "1"})
    await client.post("/v1/check/batch", data=b'{"ref": "a", "nir": "x"}\n',
                      headers={**bearer(api_key), "Content-Type": "application/x-ndjson"})
    await client.get("/nowhere")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert 'exposure_http_requests_total{method="POST",route="/v1/check",status="200"} 1.0' \
        in text
    assert 'exposure_http_requests_total{method="POST",route="/v1/check",status="422"} 1.0' \
        in text
    assert 'exposure_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' \
        in text
    assert 'exposure_lookup_duration_seconds_bucket{kind="single",le="+Inf"} 1.0' in text
    assert 'exposure_lookup_duration_seconds_count{kind="single"} 1.0' in text
    assert "exposure_lookup_seconds" not in text  # renamed (docs/operations.md)
    # Every request's duration, per route template (the bulk stream's whole length).
    assert 'exposure_http_request_duration_seconds_count{method="POST",route="/v1/check"} 2.0' \
        in text
    assert 'exposure_http_request_duration_seconds_bucket{le="+Inf",method="POST",' \
        'route="/v1/check/batch"} 1.0' in text
    # The standard process metrics (prometheus_client's ProcessCollector).
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "process_start_time_seconds"):
        assert re.search(rf"^{name} [0-9.e+]+$", text, re.MULTILINE), name
    assert 'exposure_bulk_records_total{outcome="error"} 1.0' in text
    generation = (breach.index_dir / "current").resolve().name
    assert f'exposure_index_info{{generation="{generation}"}} 1.0' in text
    assert "exposure_index_fingerprints " in text
    assert "exposure_index_rows " in text
    assert "exposure_index_swap_failures_total 0.0" in text
    assert "exposure_ready 1.0" in text


def test_metrics_counted_as_plain_numbers_render_as_prometheus_client_would() -> None:
    """The per-request series are plain numbers exported at scrape time (service.resources.metrics):
    /metrics must show exactly what prometheus_client's Counter and Histogram showed,
    `_created` series included (their values are times, compared by shape)."""
    ours = Metrics()
    reference = CollectorRegistry()
    requests = Counter("exposure_http_requests", "HTTP requests by route and status",
                       ["route", "method", "status"], registry=reference)
    latency = Histogram("exposure_lookup_duration_seconds",
                        "Time to normalise, fingerprint and look up one query", ["kind"],
                        registry=reference, buckets=LOOKUP_BUCKETS)
    lookups = Counter("exposure_lookups", "Lookups answered, by outcome",
                      ["kind", "outcome"], registry=reference)
    for route, method, status in [("/v1/check", "POST", 200), ("/v1/check", "POST", 422),
                                  ("unmatched", "BREW", 404), ("/v1/check", "POST", 200)]:
        ours.count_request(route, method, status)
        requests.labels(route, method if method != "BREW" else "OTHER", str(status)).inc()
    for seconds, found in [(0.00003, True), (0.0004, False), (0.0025, True), (0.5, False)]:
        ours.single_lookup(seconds, found)
        latency.labels("single").observe(seconds)
        lookups.labels("single", "found" if found else "not_found").inc()
    ours.lookups.labels("form", "found").inc()
    lookups.labels("form", "found").inc()

    def shape(text: bytes) -> list[str]:
        return [re.sub(r"(_created\{[^}]*\}) .*", r"\1 <time>", line)
                for line in text.decode().splitlines()]

    expected = shape(generate_latest(reference))
    assert shape(ours.render())[:len(expected)] == expected


async def test_security_headers_and_request_id(client: Client) -> None:
    uuid = "3f2a1c00-9b8e-4d7f-a6b5-0123456789ab"
    response = await client.get("/healthz", headers={"X-Request-Id": uuid})
    assert response.headers["X-Request-Id"] == uuid
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    response = await client.get("/healthz", headers={"X-Request-Id": "<script>"})
    assert response.headers["X-Request-Id"] != "<script>"


@pytest.mark.parametrize("supplied", [
    "294037512000591", "2940375120005", "253072B07300470", "1994-03-15", "15/03/1994",
    "JEAN-PIERRE-DUPONT", "d'artagnan", "abc", "x" * 65, "a" * 65,
])
async def test_a_request_id_that_could_be_an_identifier_is_replaced(
    client: Client, supplied: str,
) -> None:
    # Issue 14 (8): a client's X-Request-Id (a NIR, say) was logged and echoed.
    response = await client.post("/v1/check", json={"nir": "x"},
                                  headers={"X-Request-Id": supplied})
    assert response.headers["X-Request-Id"] != supplied
    assert supplied not in await response.text()


async def test_a_503_never_shows_where_the_index_lives(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # Issue 14 (8): "No index is loaded yet: no index published at /srv/..." on /v1/check.
    index_dir = tmp_path / "where-the-index-lives"
    client = await aiohttp_client(create_app(make_settings(index_dir=index_dir)))
    for response in (await client.post("/v1/check", json=STRANGER),
                     await client.get("/v1/sources"), await client.get("/readyz")):
        assert response.status == 503
        assert "where-the-index-lives" not in await response.text()


async def test_every_kind_of_answer_carries_the_security_headers_and_its_request_id(
    client: Client, api_key: str
) -> None:
    # JSON, problem documents (ours and aiohttp's 404/405), a page, a static file,
    # the metrics text and a streamed bulk answer: each is built its own way.
    member = json.dumps(MARIE).encode()
    answers = {
        "healthz": await client.get("/healthz"),
        "openapi": await client.get("/openapi.json"),
        "metrics": await client.get("/metrics"),
        "form": await client.get("/"),
        "static": await client.get("/static/form.css"),
        "404": await client.get("/nowhere"),
        "405": await client.get("/v1/check"),
        "415": await client.post("/v1/check", data=b"{}"),
        "422": await client.post("/v1/check", json={"nir": "1"}),
        "check": await client.post("/v1/check", json=MARIE),
        "bulk": await client.post("/v1/check/batch", data=member + b"\n", headers={
            "Content-Type": "application/x-ndjson", **bearer(api_key)}),
        "bulk 401": await client.post("/v1/check/batch", data=member,
                                      headers={"Content-Type": "application/x-ndjson"}),
    }
    request_ids = set()
    for name, response in answers.items():
        await response.read()
        for header, value in SECURITY_HEADERS.items():
            assert response.headers.get(header) == value, (name, header)
        request_ids.add(response.headers.get("X-Request-Id"))
    assert None not in request_ids and len(request_ids) == len(answers)
    assert answers["static"].status == 200 and answers["bulk"].status == 200


# --------------------------------------------------------------------- no input is a 500


async def test_no_input_yields_a_500(client: Client, api_key: str) -> None:
    rng = random.Random(20240129)
    for _ in range(300):
        body = {field: random_values(rng) for field in
                rng.sample(["nir", "birth_date", "last_name", "first_name", "other"],
                           rng.randrange(0, 5))}
        response = await client.post("/v1/check", json=body)
        assert response.status in (200, 422), (response.status, await response.text())
    for _ in range(100):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
        content_type = rng.choice(["application/json", "application/json; charset=latin-1",
                                   "text/csv", "", "application/x-ndjson"])
        response = await client.post("/v1/check", data=raw, headers={
            "Content-Type": content_type}, skip_auto_headers=["Content-Type"])
        assert response.status in (400, 415), response.status
        response = await client.post("/v1/check/batch", data=raw, headers={
            **bearer(api_key), "Content-Type": content_type or "text/csv"})
        assert response.status in (200, 415, 422), response.status
        await response.read()
    for path in ("/v1/check/%00", "/%ff%fe", "/v1/" + "a" * 4000, "/v1/sources/../../etc"):
        response = await client.get(path)
        assert response.status < 500, path
