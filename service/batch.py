"""`POST /v1/check/batch`: bulk checks for insurers, streamed both ways.

The body (NDJSON, or CSV with a header row) is read as it arrives, cut into lines,
processed in chunks of `batch_chunk_lines` (one vectorised lookup per chunk), and the
answers are written out as each chunk is done: neither side is ever held whole. A
line that cannot be used gets an error line; it never fails the batch. A line longer
than any real record is skipped as it streams (never buffered) and answered with an
error. Only the caller's `ref` is echoed.
"""

from __future__ import annotations

import asyncio
import csv
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import orjson
from aiohttp import web

from indexer.dumps import MEMBER_ALIASES, match_headers
from indexer.identity import IdentityError
from indexer.lookup import Verdict
from indexer.matchkeys import QUERY_FIELDS, MatchKey, QueryError, parse_query

from .access import authenticate
from .apikeys import ApiKey
from .errors import PayloadTooLarge, RateLimited, UnsupportedMediaType
from .state import INDEX, KEY_LIMITER, KEYS, METRICS, SETTINGS

__all__ = ["routes"]

log = logging.getLogger("exposure.batch")
routes = web.RouteTableDef()

NDJSON_TYPES: Final = frozenset({"application/x-ndjson", "application/ndjson",
                                 "application/jsonl", "application/json-lines"})
CSV_TYPES: Final = frozenset({"text/csv", "application/csv"})
MAX_REF_CHARS: Final = 128


class _LineTooLong:
    """Marker for a line skipped because it exceeded the line limit."""


TOO_LONG: Final = _LineTooLong()
Line = bytes | _LineTooLong


async def _lines(
    request: web.Request, max_line: int, max_body: int
) -> AsyncIterator[list[Line]]:
    """Batches of raw lines as the body streams in (a line ends at '\\n')."""
    pending = bytearray()
    skipping = False  # inside an over-long line: drop bytes until its end
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
        if total > max_body:
            raise PayloadTooLarge(f"The body exceeds {max_body} bytes.")
        batch: list[Line] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            if skipping:
                skipping = False
                batch.append(TOO_LONG)
            else:
                pending += chunk[start:end]
                if len(pending) > max_line:
                    batch.append(TOO_LONG)
                else:
                    batch.append(bytes(pending))
            pending.clear()
            start = end + 1
        if not skipping:
            pending += chunk[start:]
            if len(pending) > max_line:
                skipping = True
                pending.clear()
        if batch:
            yield batch
    if skipping:
        yield [TOO_LONG]
    elif pending:
        yield [bytes(pending)]


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Insurers' exports are often Windows-1252: accept them line by line.
        return raw.decode("cp1252", errors="replace")


def _error(line: int, ref: Any, field: str | None, code: str, message: str) -> dict[str, Any]:
    return {"line": line, "ref": ref,
            "error": {"field": field, "code": code, "message": message}}


class _Parser:
    """Turns one raw line into (ref, fields) or an error; NDJSON or CSV."""

    def __init__(self, csv_mode: bool) -> None:
        self.csv_mode = csv_mode
        self.columns: dict[str, int] | None = None
        self.delimiter = ","

    def header(self, text: str) -> None:
        self.delimiter = max((";", ",", "\t"), key=text.count)
        cells = next(csv.reader([text], delimiter=self.delimiter), [])
        self.columns = match_headers(cells, MEMBER_ALIASES)

    def fields(self, text: str) -> dict[str, Any]:
        if not self.csv_mode:
            value = orjson.loads(text)
            if not isinstance(value, dict):
                raise TypeError("not an object")
            return value
        assert self.columns is not None
        cells = next(csv.reader([text], delimiter=self.delimiter), [])
        return {name: cells[i].strip() for name, i in self.columns.items() if i < len(cells)}


def _ref(value: Any) -> tuple[Any, bool]:
    if value is None:
        return None, True
    if isinstance(value, bool):
        return None, False
    if isinstance(value, str) and len(value) <= MAX_REF_CHARS:
        return value, True
    if isinstance(value, int | float) and len(str(value)) <= MAX_REF_CHARS:
        return value, True
    return None, False


@routes.post("/v1/check/batch", name="batch")
async def batch(request: web.Request) -> web.StreamResponse:
    key = authenticate(request, required=True)
    assert key is not None
    settings = request.app[SETTINGS]
    content_type = request.content_type
    if content_type not in NDJSON_TYPES | CSV_TYPES:
        raise UnsupportedMediaType("Send 'application/x-ndjson' or 'text/csv'.")
    if request.content_length is not None and request.content_length > settings.max_batch_bytes:
        raise PayloadTooLarge(f"The body exceeds {settings.max_batch_bytes} bytes.")
    limiter = request.app[KEY_LIMITER]
    wait = limiter.wait_for(f"key:{key.id}", 1.0, rate_per_minute=key.rate_per_minute,
                            burst=key.rate_per_minute)
    if wait > 0:
        request.app[METRICS].rate_limited.labels("/v1/check/batch").inc()
        raise RateLimited(wait)
    response = web.StreamResponse(headers={"Cache-Control": "no-store"})
    response.content_type = "application/x-ndjson"
    await response.prepare(request)
    counts = {"lines": 0, "found": 0, "errors": 0}
    parser = _Parser(content_type in CSV_TYPES)
    store, metrics = request.app[KEYS], request.app[METRICS]
    store.record_usage(key.id, requests=1)
    try:
        async for raw_lines in _lines(request, settings.max_batch_line_bytes,
                                      settings.max_batch_bytes):
            chunk = settings.batch_chunk_lines
            for start in range(0, len(raw_lines), chunk):
                lines = raw_lines[start:start + chunk]
                out = _process(request, parser, lines, counts)
                if out:
                    used = out.count(b"\n")
                    await _pace(request, key, used)
                    store.record_usage(key.id, records=used)
                    await response.write(out)
    except PayloadTooLarge as exc:
        await response.write(orjson.dumps({"error": {
            "field": None, "code": "body_too_large", "message": exc.detail}}) + b"\n")
    except (ConnectionResetError, asyncio.CancelledError):
        log.info("batch client went away", extra={"lines": counts["lines"]})
        raise
    metrics.bulk_records.labels("found").inc(counts["found"])
    metrics.bulk_records.labels("error").inc(counts["errors"])
    metrics.bulk_records.labels("not_found").inc(
        counts["lines"] - counts["found"] - counts["errors"])
    await response.write(orjson.dumps({"summary": counts}) + b"\n")
    await response.write_eof()
    return response


async def _pace(request: web.Request, key: ApiKey, records: int) -> None:
    """Spend one unit per record; when the key's budget runs dry, slow down, don't fail."""
    limiter = request.app[KEY_LIMITER]
    while (wait := limiter.take(f"key:{key.id}", records, rate_per_minute=key.rate_per_minute,
                                burst=key.rate_per_minute)) > 0:
        await asyncio.sleep(min(wait, 5.0))


def _process(
    request: web.Request, parser: _Parser, lines: list[Line], counts: dict[str, int]
) -> bytes:
    """Answers for a chunk of raw lines, one vectorised lookup for the whole chunk."""
    answers: list[dict[str, Any] | None] = []
    queries: list[list[MatchKey]] = []
    pending: list[tuple[int, Any]] = []
    for raw in lines:
        if isinstance(raw, _LineTooLong):
            counts["lines"] += 1
            answers.append(_error(counts["lines"], None, None, "line_too_long",
                                  "This line is longer than any member record; skipped."))
            continue
        text = _decode(raw).strip().lstrip("\ufeff").strip()
        if not text:
            continue
        if parser.csv_mode and parser.columns is None:
            parser.header(text)
            continue
        counts["lines"] += 1
        line = counts["lines"]
        try:
            fields = parser.fields(text)
        except (orjson.JSONDecodeError, TypeError, csv.Error):
            what = "a CSV row" if parser.csv_mode else "a JSON object"
            answers.append(_error(line, None, None, "invalid_line", f"This line is not {what}."))
            continue
        ref, ref_ok = _ref(fields.get("ref"))
        if not ref_ok:
            answers.append(_error(line, None, "ref", "invalid_ref",
                                  "ref must be a string or number of at most 128 characters."))
            continue
        try:
            keys = parse_query({k: fields[k] for k in QUERY_FIELDS if k in fields})
        except QueryError as exc:
            first: IdentityError = exc.errors[0]
            answers.append(_error(line, ref, first.field, first.code, first.message))
            continue
        answers.append(None)
        queries.append(keys)
        pending.append((line, ref))
    verdicts: list[Verdict] = request.app[INDEX].checker.check_many(queries) if queries else []
    out: list[bytes] = []
    results = iter(zip(pending, verdicts, strict=True))
    dumps: Callable[[Any], bytes] = orjson.dumps
    for answer in answers:
        if answer is not None:
            counts["errors"] += 1
            out.append(dumps(answer))
            continue
        (line, ref), verdict = next(results)
        if verdict["found"]:
            counts["found"] += 1
        out.append(dumps({"line": line, "ref": ref, **verdict}))
    return b"\n".join(out) + b"\n" if out else b""
