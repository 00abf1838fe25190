"""JSON routes: single check, sources, health, readiness, metrics, OpenAPI.

Handlers are thin: parse, call the core (`indexer.core.matchkeys`, `indexer.index.lookup`),
render. Identifiers live in local variables of one request and nowhere else.
"""

from __future__ import annotations

import os
import time
from typing import Any, Final

import orjson
from aiohttp import hdrs, web

from indexer.core.matchkeys import canonical_keys
from indexer.core.records import DATA_CLASSES
from indexer.index.reader import IndexReader
from service.access import admit
from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from service.middleware import answer_headers
from service.resources.metrics import CONTENT_TYPE_LATEST
from service.state import INDEX, INFLIGHT, KEYS, METRICS
from service.views.openapi import openapi_document

__all__ = ["json_response", "routes", "sources_document"]

JSON_NO_STORE: Final = answer_headers("application/json")
JSON_CACHED: Final = answer_headers("application/json", cache=True)
routes = web.RouteTableDef()


def json_response(body: Any, status: int = 200, *, cache: bool = False) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status,
                        headers=JSON_CACHED if cache else JSON_NO_STORE)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; 415, 413 (via client_max_size) or 400 otherwise."""
    # The header as sent first: parsing it (for a charset parameter, say) is only needed
    # when it is not exactly the usual value.
    if request.headers.get(hdrs.CONTENT_TYPE) != "application/json" \
            and request.content_type != "application/json":
        raise UnsupportedMediaType("Send the body as 'Content-Type: application/json'.")
    limit = request.client_max_size
    length = request.content_length
    if length is not None and length > limit:
        # Refuse before reading: the declared size is enough to know.
        raise PayloadTooLarge(f"The body exceeds {limit} bytes.")
    content = request.content
    if length is not None and content.is_eof():
        # All of a declared (and allowed) length is here, as for nearly every small body:
        # take it as it arrived, without BaseRequest.read's copy and its awaits.
        raw = content.read_nowait()
    else:
        raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("The body is not valid JSON (UTF-8).") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


@routes.post("/v1/check", name="check")
async def check(request: web.Request) -> web.Response:
    # Spend first: a malformed request costs a unit too, or an enumerator would probe
    # the validator for free.
    admit(request)
    body = await read_json_object(request)
    checker = request.app[INDEX].checker
    started = time.perf_counter()
    verdict = checker.check_one(canonical_keys(body))
    request.app[METRICS].single_lookup(time.perf_counter() - started, bool(verdict["found"]))
    return json_response(verdict)


@routes.get("/v1/sources", name="sources")
async def sources(request: web.Request) -> web.Response:
    return json_response(request.app[INDEX].sources, cache=True)


def sources_document(reader: IndexReader) -> dict[str, Any]:
    """The answer of `GET /v1/sources` for a generation.

    Computed once, when the generation is opened (service.resources.index_holder): a manifest
    whose sources are not of the expected shape is refused then (ValueError), rather
    than answering 500 here or something the OpenAPI document does not promise.
    """
    return {"generation": _text(reader.generation),
            "sources": [_source(entry) for entry in reader.manifest["sources"]]}


def _source(entry: dict[str, Any]) -> dict[str, Any]:
    counts = {str(name): _count(value) for name, value in entry.get("classes", {}).items()}
    return {
        "id": _text(entry["id"]), "title": _text(entry["title"]),
        "breach_date": _text(entry["breach_date"]),
        "description": _text(entry.get("description", "")),
        # In the fixed vocabulary order (the manifest's keys are sorted by name).
        "data_classes": [c for c in DATA_CLASSES if counts.get(c)],
        "class_counts": counts,
        "rows": _count(entry.get("rows", 0)),
        "records_indexed": _count(entry.get("records_indexed", 0)),
    }


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("a source field of the manifest is not a string")
    return value


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError("a source count of the manifest is not a count")
    return value


@routes.get("/healthz", name="healthz")
async def healthz(request: web.Request) -> web.Response:
    # The worker's process id tells apart the workers behind one port (load balancing
    # checks); it is no secret.
    return json_response({"status": "ok", "worker": os.getpid()})


@routes.get("/readyz", name="readyz")
async def readyz(request: web.Request) -> web.Response:
    holder = request.app[INDEX]
    if request.app[INFLIGHT].draining:
        # Stopping: finishing what is in flight, taking nothing new.
        return json_response({"status": "not_ready", "detail": "shutting down"}, status=503)
    if not holder.ready:
        return json_response({"status": "not_ready", "detail": holder.last_error}, status=503)
    # A key store deleted or unreadable under the service: revocations would not reach it.
    keys_problem = request.app[KEYS].health()
    if keys_problem is not None:
        return json_response({"status": "not_ready", "detail": keys_problem}, status=503)
    reader = holder.checker.reader
    # `detail` names the last generation refused since this one was loaded, if any:
    # still ready (the old generation serves), but an operator must look.
    return json_response({
        "status": "ready",
        "generation": reader.generation,
        "fingerprints": reader.fingerprint_count,
        "loaded_at": holder.loaded_at,
        "detail": holder.last_error,
    })


@routes.get("/metrics", name="metrics")
async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=request.app[METRICS].render())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


@routes.get("/openapi.json", name="openapi")
async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(), cache=True)
