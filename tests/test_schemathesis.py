"""Schemathesis against the service's own OpenAPI document, on a real server.

Every operation of `/openapi.json` gets 30 derandomized examples, schema-valid and
schema-invalid (schemathesis's positive and negative modes), sent to a real
`exposure-serve` on a loopback port (with a private part, so the private routes
answer for real), anonymously and with an API key. Each answer must be no server
error, have a status, content type, headers and body the document declares for the
operation, and schema-invalid requests must be refused (4xx). Bulk answers are NDJSON:
each line is checked against the document's `x-item-schema`.

Pinned to what works with schemathesis 4.x and pytest 9: the schema is loaded with
`openapi.from_dict` from `service.views.openapi.openapi_document()` at import (the lazy
`from_fixture` loader touches a pytest internal that pytest 9 removed), and a test
checks that the server serves exactly that document. `positive_data_acceptance` is not
among the checks on purpose: the schema says "a string of at most 64 characters" for a
NIR, and the service rightly answers 422 to most such strings (docs/design.md §5).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator
from live_server import LiveServer, build_private_crafted, live_server
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.resources.apikeys import KeyStore
from service.views.openapi import openapi_document

pytestmark = pytest.mark.slow

DOCUMENT = openapi_document()
DOC_URI = "urn:exposure:openapi"
# Schema-invalid requests must be refused with a 4xx: schemathesis's default list,
# plus 413 (a list longer than `maxItems` is also a body over the size limit).
CONFIG = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {
    "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]}}})
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_context: Any, value: Any) -> bytes:
    """The bulk body: the document says "a string"; other values (negative mode) as JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS) + b"\n"


def _item_validator(media: dict[str, Any]) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, Resource.from_contents(DOCUMENT, default_specification=DRAFT202012))
    item = json.loads(json.dumps(media["x-item-schema"]).replace(
        '"#/components', f'"{DOC_URI}#/components'))
    return Draft202012Validator(item, registry=registry)


def ndjson_lines_conform(_context: Any, response: Any, case: Any) -> bool | None:
    """Every line of an NDJSON answer matches the item schema of its operation."""
    if response.headers.get("content-type", [""])[0].split(";")[0] != "application/x-ndjson":
        return None
    declared = DOCUMENT["paths"][case.operation.path][case.operation.method.lower()]
    media = declared["responses"][str(response.status_code)]["content"]["application/x-ndjson"]
    validator = _item_validator(media)
    lines = [orjson.loads(line) for line in response.content.split(b"\n") if line]
    assert lines and "summary" in lines[-1], "a bulk answer ends with its summary line"
    for line in lines:
        validator.validate(line)
    return True


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection,
          ndjson_lines_conform]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    root = tmp_path_factory.mktemp("schemathesis")
    built = build_private_crafted(root / "breach")
    keys_db = root / "keys.sqlite"
    store = KeyStore(keys_db)
    try:
        _, token = store.create("Schemathesis insurer")
    finally:
        store.close()
    with live_server(built.crafted.index_dir, built.crafted.pepper_file, root / "serve",
                     "--anon-rate", "0", "--keys-db", str(keys_db),
                     "--oprf-key-file", str(built.oprf_key_file)) as server:
        yield server, token


def test_the_server_serves_the_document_under_test(served: tuple[LiveServer, str]) -> None:
    server, _ = served
    answer = server.request("GET", "/openapi.json")
    assert answer.status == 200
    assert answer.json() == json.loads(json.dumps(DOCUMENT))


@pytest.mark.parametrize("caller", ["anonymous", "api-key"])
@schema.parametrize()
@settings(max_examples=30, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_conforms(case: Any, served: tuple[LiveServer, str], caller: str) -> None:
    server, token = served
    headers = {"Authorization": f"Bearer {token}"} if caller == "api-key" else {}
    checks = CHECKS
    if case.operation.path == "/v1/check/batch":
        # The bulk body is "a string" of lines: a schema-invalid value (a number, an
        # object) goes on the wire as the same bytes as some valid string, so it
        # cannot be refused as such; each bad line gets its error line instead.
        checks = [check for check in CHECKS if check is not negative_data_rejection]
    case.call_and_validate(base_url=f"http://127.0.0.1:{server.port}", headers=headers,
                           checks=checks, timeout=30)


def test_a_log_line_per_request_and_no_traceback(served: tuple[LiveServer, str]) -> None:
    """After everything schemathesis sent: no internal error anywhere in the log."""
    server, _ = served
    entries = [json.loads(line) for line in server.log_text().splitlines()
               if line.startswith("{")]
    assert entries
    assert not [e for e in entries if e.get("level") in ("error", "critical")]
    assert not [e for e in entries if "exc" in e]
    assert not [e for e in entries if str(e.get("status", "")).startswith("5")]

