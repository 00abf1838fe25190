"""/openapi.json is a valid OpenAPI 3.1 document, and real answers match what it declares.

Every JSON route is called for real, on its success and its error statuses, and each
body is validated against the schema the document gives for that route, status and
content type (JSON Schema 2020-12, as OpenAPI 3.1 uses).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from service_support import MARIE, STRANGER, Crafted, bearer, build_crafted

from service.app import create_app
from service.resources.apikeys import KeyStore
from service.settings import Settings
from service.views import api, batch

Client = TestClient[web.Request, web.Application]
DOC_URI = "urn:exposure:openapi"


# One letter off the crafted breach's DUPONT, Marie, 15 March 1994: a similar match.
SIMILAR = {"last_name": "Dupond", "first_name": "Marie", "birth_date": "15/03/1994"}


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    return build_crafted(tmp_path_factory.mktemp("crafted"))


@pytest.fixture
async def served(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings], crafted: Crafted
) -> tuple[Client, dict[str, Any], str]:
    settings = make_settings(index_dir=crafted.index_dir, pepper_file=crafted.pepper_file,
                             anon_rate=1.0, anon_burst=30)
    store = KeyStore(settings.keys_db)
    try:
        _, token = store.create("Documented insurer")
    finally:
        store.close()
    client: Client = await aiohttp_client(create_app(settings))
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    document: dict[str, Any] = await response.json()
    return client, document, token


def validator_for(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, Resource.from_contents(document, default_specification=DRAFT202012))
    resolved = json.loads(json.dumps(schema).replace('"#/components', f'"{DOC_URI}#/components'))
    return Draft202012Validator(resolved, registry=registry)


async def conforms(document: dict[str, Any], path: str, method: str,
                   response: ClientResponse) -> Any:
    """The body of `response`, after validating it against the document's schema."""
    declared = document["paths"][path][method]["responses"]
    assert str(response.status) in declared, f"{method} {path}: {response.status} undeclared"
    content = declared[str(response.status)]["content"]
    assert response.content_type in content, (path, response.status, response.content_type)
    media = content[response.content_type]
    raw = await response.read()
    if response.content_type == "application/x-ndjson":
        line_validator = validator_for(document, media["x-item-schema"])
        lines = [json.loads(line) for line in raw.splitlines() if line]
        for line in lines:
            line_validator.validate(line)
        return lines
    body = json.loads(raw)
    validator_for(document, media["schema"]).validate(body)
    for name, header in declared[str(response.status)].get("headers", {}).items():
        assert name in response.headers, name
        if "const" in header["schema"]:
            assert response.headers[name] == header["schema"]["const"]
    return body


async def test_document_is_valid_openapi_3_1(
    served: tuple[Client, dict[str, Any], str]
) -> None:
    _, document, _ = served
    assert document["openapi"].startswith("3.1.")
    validate_spec(document)  # raises on any fault
    Draft202012Validator.check_schema(document["components"]["schemas"]["Verdict"])


async def test_every_json_route_is_documented(
    served: tuple[Client, dict[str, Any], str]
) -> None:
    _, document, _ = served
    for table in (api.routes, batch.routes):
        for route in table:
            assert isinstance(route, web.RouteDef)
            assert route.method.lower() in document["paths"][route.path], route.path


async def test_check_answers_match_their_schemas(
    served: tuple[Client, dict[str, Any], str]
) -> None:
    client, document, token = served

    async def post(**kwargs: Any) -> Any:
        return await conforms(document, "/v1/check", "post",
                              await client.post("/v1/check", **kwargs))

    assert (await post(json=MARIE))["match"] == "strong"
    assert (await post(json=STRANGER))["found"] is False
    similar = await post(json=SIMILAR)
    assert similar["match"] == "similar"
    assert {d for s in similar["sources"] for d in s["differences"]} == {"spelling"}
    assert (await post(json={"nir": "1"}))["status"] == 422
    assert (await post(data=b"{", headers={"Content-Type": "application/json"}))["status"] == 400
    assert (await post(data=b"{}", headers={"Content-Type": "text/plain"}))["status"] == 415
    assert (await post(json={"pad": "x" * 17000}))["status"] == 413
    assert (await post(json=MARIE, headers=bearer("exk_nope")))["status"] == 401
    assert (await post(json=MARIE, headers=bearer(token)))["found"] is True
    for _ in range(40):
        response = await client.post("/v1/check", json=STRANGER)
        if response.status == 429:
            assert (await conforms(document, "/v1/check", "post", response))["status"] == 429
            break
        await response.read()
    else:
        raise AssertionError("never rate limited")


async def test_batch_answers_match_their_schemas(
    served: tuple[Client, dict[str, Any], str]
) -> None:
    client, document, token = served
    body = b"".join(json.dumps(line).encode() + b"\n" for line in (
        {"ref": "a", **MARIE}, {"ref": 2, **STRANGER}, {"ref": "c", "nir": "1"}, ["x"],
        {"ref": "d", **SIMILAR}))
    lines = await conforms(document, "/v1/check/batch", "post", await client.post(
        "/v1/check/batch", data=body,
        headers={**bearer(token), "Content-Type": "application/x-ndjson"}))
    assert len(lines) == 6 and "summary" in lines[-1]
    assert lines[4]["match"] == "similar" and lines[-1]["summary"]["similar"] == 1
    for status, headers, data in (
        (401, {}, body),
        (415, {**bearer(token), "Content-Type": "text/plain"}, body),
        (422, {**bearer(token), "Content-Type": "text/csv"}, b"a;b\n1;2\n"),
    ):
        response = await client.post("/v1/check/batch", data=data, headers={
            "Content-Type": "application/x-ndjson", **headers})
        assert response.status == status
        await conforms(document, "/v1/check/batch", "post", response)


async def test_other_routes_match_their_schemas(
    served: tuple[Client, dict[str, Any], str]
) -> None:
    client, document, _ = served
    for path in ("/v1/sources", "/healthz", "/readyz", "/openapi.json"):
        await conforms(document, path, "get", await client.get(path))
    response = await client.get("/metrics")
    assert response.status == 200
    assert "text/plain" in document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


async def test_not_ready_answers_match_their_schemas(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Any,
    served: tuple[Client, dict[str, Any], str]
) -> None:
    _, document, token = served
    client = await aiohttp_client(create_app(make_settings(index_dir=tmp_path / "none")))
    await conforms(document, "/readyz", "get", await client.get("/readyz"))
    response = await client.post("/v1/check/batch", data=b"{}\n", headers={
        **bearer(token), "Content-Type": "application/x-ndjson"})
    assert (await conforms(document, "/v1/check/batch", "post", response))["status"] == 503
    await conforms(document, "/v1/sources", "get", await client.get("/v1/sources"))
    await conforms(document, "/v1/check", "post", await client.post("/v1/check", json=MARIE))
