"""Private lookups over HTTP (docs/design.md §7, contract): the service evaluates blind.

    GET  /v1/private/params     suite, mode, bucket_bits, output_bytes, bucket_size, key_id
    POST /v1/private/evaluate   {"items": [{"bucket", "blinded"}, ...]} (1 to 1,000)
                             -> {"items": [{"evaluated", "entries": [...]}, ...]}

What the service learns and why it is safe: docs/private-lookups.md. Never log a
request beyond its size, nor echo a blinded or evaluated element in an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final

import orjson
from aiohttp import web

from indexer.private import oprf
from indexer.private.store import PrivateIndex
from service.access import authenticate, spend
from service.errors import (
    ApiError,
    BadRequest,
    FeatureOff,
    InvalidIdentifiers,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from service.middleware import REQUEST_ID
from service.state import INDEX, KEYS, PRIVATE

log = logging.getLogger("exposure.private")

MAX_ITEMS: Final = 1000
# 1,000 items of {"bucket": 16777215, "blinded": "<64 hex>"} are ~90 KB; the slack is
# for whitespace. The app-wide 16 KiB limit of /v1/check would not hold them.
MAX_EVALUATE_BYTES: Final = 256 * 1024
# Up to this many items are evaluated on the event loop (~80 µs each); a larger batch
# goes to a thread: libsodium's scalar multiplication runs without the GIL.
INLINE_ITEMS: Final = 8
MAX_REPORTED_ERRORS: Final = 20
NO_STORE: Final = {"Cache-Control": "no-store"}



# ------------------------------------------------------------------------ pure parts

ItemError = dict[str, str | None]


def _item_error(index: int, field: str, code: str, message: str) -> ItemError:
    return {"field": f"items[{index}]{field}", "code": code, "message": message}


def parse_items(items: Sequence[object], bucket_count: int) -> list[tuple[int, bytes]]:
    """(bucket, blinded element) per item, or InvalidIdentifiers listing what is wrong.

    Messages name the item and the field, never the value.
    """
    parsed: list[tuple[int, bytes]] = []
    errors: list[ItemError] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append(_item_error(i, "", "invalid_item",
                                      'An item is an object {"bucket", "blinded"}.'))
            continue
        bucket = item.get("bucket")
        if (not isinstance(bucket, int) or isinstance(bucket, bool)
                or not 0 <= bucket < bucket_count):
            errors.append(_item_error(i, ".bucket", "invalid_bucket",
                                      f"The bucket is an integer from 0 to {bucket_count - 1}."))
            bucket = None
        blinded = item.get("blinded")
        try:
            if not isinstance(blinded, str):
                raise oprf.OprfError(oprf.OprfErrorCode.INVALID_POINT)
            element = oprf.decode_element_hex(blinded)
        except oprf.OprfError:
            errors.append(_item_error(i, ".blinded", "invalid_point",
                                      "The blinded element is not a valid ristretto255 "
                                      "encoding (64 hex digits)."))
            continue
        if bucket is not None:
            parsed.append((bucket, element))
    if errors:
        raise InvalidIdentifiers(
            f"{len(errors)} item(s) are invalid.", errors=errors[:MAX_REPORTED_ERRORS]
        )
    return parsed


def answer_items(
    index: PrivateIndex, oprf_key: bytes, items: Sequence[tuple[int, bytes]]
) -> list[dict[str, Any]]:
    """The evaluated element and the padded bucket of each item (CPU bound)."""
    return [
        {
            "evaluated": oprf.blind_evaluate(oprf_key, element).hex(),
            "entries": [entry.hex() for entry in index.entries(bucket)],
        }
        for bucket, element in items
    ]


# -------------------------------------------------------------------------- handlers


def _json(body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json",
                        headers=NO_STORE)


async def _read_items(request: web.Request) -> tuple[list[object], int]:
    """The `items` list of the body and the body's size; 415, 413, 400 or 422 otherwise."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Send the body as 'Content-Type: application/json'.")
    if (request.content_length or 0) > MAX_EVALUATE_BYTES:
        raise PayloadTooLarge(f"The body is limited to {MAX_EVALUATE_BYTES} bytes.")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > MAX_EVALUATE_BYTES:
            raise PayloadTooLarge(f"The body is limited to {MAX_EVALUATE_BYTES} bytes.")
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise BadRequest("The body is not valid JSON (UTF-8).") from None
    if not isinstance(body, dict):
        raise BadRequest('The body must be a JSON object {"items": [...]}.')
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        raise InvalidIdentifiers(
            f"'items' must be a list of 1 to {MAX_ITEMS} items.",
            errors=[{"field": "items", "code": "invalid_items",
                     "message": f"Send 1 to {MAX_ITEMS} items per request."}],
        )
    return items, size


async def _served_index(request: web.Request) -> PrivateIndex:
    lookups = request.app[PRIVATE]
    if not lookups.enabled:
        # Switched off: 404 whether or not an index is loaded yet (FeatureOff).
        raise FeatureOff("Private lookups are not enabled on this service.")
    generation = request.app[INDEX].checker.reader.path  # NotReady (503) when no index yet
    return await lookups.index_for(generation)


routes = web.RouteTableDef()


@routes.get("/v1/private/params", name="private_params")
async def params(request: web.Request) -> web.Response:
    index = await _served_index(request)
    return _json(index.params.as_json())


@routes.post("/v1/private/evaluate", name="private_evaluate")
async def evaluate(request: web.Request) -> web.Response:
    try:
        caller = authenticate(request, required=False)
    except Unauthorized:
        spend(request, None)  # made-up keys are limited like any anonymous flood
        raise
    try:
        items, size = await _read_items(request)
    except ApiError:
        spend(request, caller)  # a malformed request costs a unit too, as for /v1/check
        raise
    spend(request, caller, cost=len(items))
    if caller is not None:
        # Accountability: counts only, as for the bulk API (one record per evaluation).
        request.app[KEYS].record_usage(caller.id, requests=1, records=len(items))
    log.info("private evaluate", extra={
        "request_id": request.get(REQUEST_ID), "items": len(items), "bytes": size})
    lookups = request.app[PRIVATE]
    index = await _served_index(request)
    parsed = parse_items(items, index.bucket_count)
    if len(parsed) <= INLINE_ITEMS:
        answers = answer_items(index, lookups.key, parsed)
    else:
        loop = asyncio.get_running_loop()
        answers = await loop.run_in_executor(
            lookups.executor, answer_items, index, lookups.key, parsed
        )
    return _json({"items": answers})



# --------------------------------------------------------------------------- OpenAPI

_PROBLEM: Final = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
_HEX_ELEMENT: Final = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
                       "description": "A ristretto255 element, 32 bytes in hex."}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": _PROBLEM}


PRIVATE_OPENAPI_PATHS: Final[dict[str, Any]] = {
    "/v1/private/params": {"get": {
        "operationId": "privateParams",
        "summary": "Parameters of private lookups (RFC 9497 OPRF + k-anonymous buckets)",
        "responses": {
            "200": {"description": "The parameters a client needs", "content": {
                "application/json": {"schema": {
                    "type": "object",
                    "required": ["suite", "mode", "bucket_bits", "output_bytes", "bucket_size",
                                 "key_id"],
                    "properties": {
                        "suite": {"const": oprf.SUITE},
                        "mode": {"const": "oprf"},
                        "bucket_bits": {"type": "integer", "minimum": 0, "maximum": 32},
                        "output_bytes": {"type": "integer", "minimum": 1, "maximum": 64},
                        "bucket_size": {"type": "integer", "minimum": 1},
                        "key_id": {"type": "string"},
                    },
                }}}},
            "404": _problem("Private lookups are not enabled on this service, or the index "
                            "being served has no private part"),
            "503": _problem("No index loaded yet"),
        },
    }},
    "/v1/private/evaluate": {"post": {
        "operationId": "privateEvaluate",
        "summary": "Evaluate blinded elements; each item costs one unit of the rate limit",
        "description": "Bucket of a canonical key input: the first 4 bytes of "
        "SHA-256('exposure-bucket-v1|' + input), big-endian, shifted right by "
        "32 - bucket_bits. The request is never logged beyond its size.",
        "security": [{}, {"bearer": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["items"],
            "properties": {"items": {
                "type": "array", "minItems": 1, "maxItems": MAX_ITEMS,
                "items": {"type": "object", "required": ["bucket", "blinded"], "properties": {
                    "bucket": {"type": "integer", "minimum": 0},
                    "blinded": _HEX_ELEMENT,
                }},
            }},
        }}}},
        "responses": {
            "200": {
                "description": "Per item, in order: the evaluated element and the bucket's "
                "entries padded with random values to bucket_size, sorted",
                "headers": {"Cache-Control": {"schema": {"const": "no-store"}}},
                "content": {"application/json": {"schema": {
                    "type": "object", "required": ["items"],
                    "properties": {"items": {"type": "array", "items": {
                        "type": "object", "required": ["evaluated", "entries"],
                        "properties": {
                            "evaluated": _HEX_ELEMENT,
                            "entries": {"type": "array", "items": {
                                "type": "string", "pattern": "^[0-9a-f]+$"}},
                        },
                    }}},
                }}},
            },
            "400": _problem("Malformed JSON"),
            "401": _problem("Unknown API key"),
            "408": _problem("The body did not arrive in time; the connection is closed"),
            "413": _problem(f"Body larger than {MAX_EVALUATE_BYTES} bytes"),
            "415": _problem("Not application/json"),
            "422": _problem("Invalid points or buckets, or not 1 to 1,000 items"),
            "429": {
                "description": "Rate limited; retry after the number of seconds in Retry-After.",
                "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
                "content": _PROBLEM,
            },
            "404": _problem("Private lookups are not enabled on this service, or the index "
                            "being served has no private part"),
            "503": _problem("No index loaded yet"),
        },
    }},
}
