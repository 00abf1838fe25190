"""Private lookups over HTTP (DESIGN §7, contract): the service evaluates blind.

    GET  /v1/private/params     suite, mode, bucket_bits, output_bytes, bucket_size, key_id
    POST /v1/private/evaluate   {"items": [{"bucket", "blinded"}, ...]} (1 to 1,000)
                             -> {"items": [{"evaluated", "entries": [...]}, ...]}

The caller sends a public bucket number and a blinded ristretto255 element per key;
the service multiplies the element by its OPRF key and returns it with the bucket's
entries, padded to `bucket_size`. It learns the bucket (one of ~2 million, each shared
by millions of possible identities) and nothing else: not the identity, not whether
it was found. Enumeration needs one evaluation per guess, and each evaluation costs
one unit of the caller's rate limit (the address's, or the API key's).

The private part followed is the one of the generation the main index holder serves
(`app[INDEX]`), so both kinds of lookup always answer from the same generation. The
OPRF key comes from `Settings.oprf_key_file`, else $EXPOSURE_OPRF_KEY_FILE; without
one the routes answer 503 and the rest of the service runs as usual.

What must never happen here: logging a request beyond its size, echoing a blinded or
evaluated element in an error, or letting the OPRF key reach a log or a message.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import web

from indexer import oprf
from indexer.generation import IndexNotFound, current_generation
from indexer.private import (
    OPRF_KEY_ENV,
    NoPrivatePart,
    OprfKeyError,
    PrivateIndex,
    PrivateIndexError,
    load_oprf_key,
)

from .access import authenticate, spend
from .errors import (
    ApiError,
    BadRequest,
    InvalidIdentifiers,
    NotReady,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from .middleware import REQUEST_ID
from .settings import Settings
from .state import INDEX, KEYS, SETTINGS

__all__ = [
    "MAX_ITEMS",
    "PRIVATE",
    "PRIVATE_OPENAPI_PATHS",
    "PrivateLookups",
    "answer_items",
    "parse_items",
    "precheck",
    "setup",
]

log = logging.getLogger("exposure.private")

MAX_ITEMS: Final = 1000
# 1,000 items of {"bucket": 16777215, "blinded": "<64 hex>"} are ~90 KB; the slack is
# for whitespace. The app-wide 16 KiB limit of /v1/check would not hold them.
MAX_EVALUATE_BYTES: Final = 256 * 1024
# Up to this many items are evaluated on the event loop (~80 µs each); a larger batch
# goes to a thread: libsodium's scalar multiplication, called through ctypes,
# runs without the GIL.
INLINE_ITEMS: Final = 8
EVALUATE_THREADS: Final = 2
# A batch of 1,000 bad items gets its first errors, not a 1,000-line problem.
MAX_REPORTED_ERRORS: Final = 20
NO_STORE: Final = {"Cache-Control": "no-store"}

_UNAVAILABLE: Final = "Private lookups are not available for the index being served."


class PrivateLookups:
    """The OPRF key and the private part of the generation being served.

    The private part is opened lazily, the first time a request meets a generation
    (and once at start-up), off the event loop; a generation without one, or built
    under another OPRF key, is remembered as refused and answers 503.
    """

    def __init__(self, oprf_key: bytes | None, executor: Executor | None = None) -> None:
        self._key = oprf_key
        self.key_id = oprf.key_id(oprf_key) if oprf_key is not None else None
        self.executor = executor
        self._loaded: tuple[Path, PrivateIndex] | None = None
        self._refused: tuple[Path, str] | None = None
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self._key is not None

    @property
    def key(self) -> bytes:
        if self._key is None:
            raise NotReady("Private lookups are not enabled on this service.")
        return self._key

    async def index_for(self, generation: Path) -> PrivateIndex:
        """The private part of `generation`, opened once; NotReady (503) if unusable."""
        if self._key is None:
            raise NotReady("Private lookups are not enabled on this service.")
        index = self._known(generation)
        if index is None:
            async with self._lock:  # one opening per generation, however many requests
                index = self._known(generation)
                if index is None:
                    await self._open(generation)
                    index = self._known(generation)
        if index is None:
            raise NotReady(_UNAVAILABLE)
        return index

    def _known(self, generation: Path) -> PrivateIndex | None:
        """The opened part of `generation`; None if never tried; NotReady if refused."""
        loaded, refused = self._loaded, self._refused
        if loaded is not None and loaded[0] == generation:
            return loaded[1]
        if refused is not None and refused[0] == generation:
            raise NotReady(_UNAVAILABLE)
        return None

    async def _open(self, generation: Path) -> None:
        loop = asyncio.get_running_loop()
        try:
            index = await loop.run_in_executor(self.executor, self._open_blocking, generation)
        except PrivateIndexError as exc:
            self._refused = (generation, str(exc))
            level = logging.INFO if isinstance(exc, NoPrivatePart) else logging.ERROR
            log.log(level, "private part refused",
                    extra={"generation": generation.name, "reason": str(exc)})
            return
        self._loaded, self._refused = (generation, index), None
        log.info("private part loaded", extra={
            "generation": generation.name, "bucket_bits": index.params.bucket_bits,
            "bucket_size": index.params.bucket_size,
        })

    def _open_blocking(self, generation: Path) -> PrivateIndex:
        index = PrivateIndex(generation, verify=True)
        if index.params.key_id != self.key_id:
            index.close()
            raise PrivateIndexError(
                f"the private part of {generation.name} was built with another OPRF key "
                f"(key id {index.params.key_id}, this service's is {self.key_id}): start "
                "with the OPRF key file used for the build, or rebuild with --private"
            )
        return index


PRIVATE: Final = web.AppKey("private_lookups", PrivateLookups)
"""Defined here rather than in service.state: state cannot import this module
(it imports state), and a string key would lose the type."""


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
    generation = request.app[INDEX].checker.reader.path  # NotReady when no index yet
    return await request.app[PRIVATE].index_for(generation)


async def params(request: web.Request) -> web.Response:
    index = await _served_index(request)
    return _json(index.params.as_json())


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


# ----------------------------------------------------------------------------- setup


def _key_file(settings: Settings) -> Path | None:
    chosen = settings.oprf_key_file or os.environ.get(OPRF_KEY_ENV)
    return Path(chosen) if chosen else None


def _context(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def private_ctx(app: web.Application) -> AsyncIterator[None]:
        path = _key_file(settings)
        # A configured but unreadable or invalid key stops the start (OprfKeyError): an
        # operator who asked for private lookups should not get a silent 503.
        key = load_oprf_key(path) if path is not None else None
        if key is None:
            log.info("private lookups disabled: no OPRF key file")
        executor = ThreadPoolExecutor(EVALUATE_THREADS, thread_name_prefix="oprf")
        lookups = PrivateLookups(key, executor)
        app[PRIVATE] = lookups
        holder = app[INDEX]
        if key is not None and holder.ready:
            try:
                await lookups.index_for(holder.checker.reader.path)
            except NotReady:
                pass  # logged by PrivateLookups; the routes answer 503
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    return private_ctx


def setup(app: web.Application, settings: Settings | None = None) -> None:
    """Add the private routes and their resources to an app built by create_app.

    Call it after the index's cleanup context is registered (it reads `app[INDEX]`).
    Calling it twice is harmless.
    """
    if "private_params" in app.router.named_resources():
        return
    app.cleanup_ctx.append(_context(settings if settings is not None else app[SETTINGS]))
    app.router.add_get("/v1/private/params", params, name="private_params")
    app.router.add_post("/v1/private/evaluate", evaluate, name="private_evaluate")


def precheck(settings: Settings) -> None:
    """For `exposure-serve` before it forks: a bad OPRF key, or one that is not the
    build's, stops the start with a clear message (OprfKeyError)."""
    path = _key_file(settings)
    if path is None:
        return
    key_id = oprf.key_id(load_oprf_key(path))
    try:
        generation = current_generation(settings.index_dir)
        index = PrivateIndex(generation, verify=False)
    except (IndexNotFound, PrivateIndexError):
        return  # no index or no private part yet: the routes will say 503
    built_with = index.params.key_id
    index.close()
    if built_with != key_id:
        raise OprfKeyError(
            f"the OPRF key file {path} (key id {key_id}) is not the one the index "
            f"{generation.name} was built with (key id {built_with})"
        )


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
            "503": _problem("No index, no private part, or private lookups disabled"),
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
            "503": _problem("No index, no private part, or private lookups disabled"),
        },
    }},
}
