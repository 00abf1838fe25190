"""`POST /v1/check/batch`: bulk checks for insurers, streamed both ways.

The body (NDJSON, or CSV with a header row) is read as it arrives, cut into lines,
processed in chunks of `batch_chunk_lines` (one vectorised lookup per chunk), and the
answers are written out as each chunk is done: neither side is ever held whole. A
line that cannot be used gets an error line; it never fails the batch. A line longer
than any real record is skipped as it streams (never buffered) and answered with an
error. A body that stops arriving for `body_timeout` seconds ends the answer with an
error line and the connection is closed: a stalled client holds nothing for long.
Only the caller's `ref` is echoed.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from operator import itemgetter
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from indexer.core.columns import MEMBER_ALIASES, decode_line, match_headers
from indexer.core.identity import IdentityError
from indexer.core.matchkeys import QueryError, QueryMemo, canonical_keys
from indexer.index.lookup import Verdict
from service.access import authenticate, bearer_token, take_from_key
from service.errors import (
    InvalidIdentifiers,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    UnsupportedMediaType,
)
from service.resources.apikeys import ApiKey
from service.resources.metrics import route_label
from service.state import INDEX, KEY_LIMITER, KEYS, METRICS, SETTINGS

__all__ = ["routes"]

log = logging.getLogger("exposure.batch")
routes = web.RouteTableDef()

NDJSON_TYPES: Final = frozenset({"application/x-ndjson", "application/ndjson",
                                 "application/jsonl", "application/json-lines"})
CSV_TYPES: Final = frozenset({"text/csv", "application/csv"})
MAX_REF_CHARS: Final = 128  # docs/design.md §5: longer refs make an error line
# A verdict line without its verdict: line number, ref, then the encoded verdict
# without its opening brace.
_ANSWER: Final = b'{"line":%d,"ref":%b,%b'
# Refs that JSON writes as they are, between quotes: printable ASCII but '"' and '\\'
# (member numbers are). A chunk whose refs all are is encoded in one pass ('\n' joins
# them), not one dumps() call a line.
_PLAIN_REFS: Final = re.compile(r'[\x20\x21\x23-\x5b\x5d-\x7e\n]*')
_PLAIN_ANSWER: Final = b'{"line":%d,"ref":"%b",%b'
_FOUND: Final = itemgetter("found")
_MATCH: Final = itemgetter("match")


class _Skipped:
    """Marker for a line (or CSV record) that is answered with an error and never read:
    none of its text is echoed."""

    def __init__(self, code: str, message: str, *, odd_quotes: bool = False) -> None:
        self.code, self.message, self.odd_quotes = code, message, odd_quotes


def _too_long(quotes: int) -> _Skipped:
    return TOO_LONG_ODD if quotes % 2 else TOO_LONG


TOO_LONG: Final = _Skipped("line_too_long", "This line is longer than any member record; skipped.")
# The same, for a line with an odd number of quotes: in CSV, it opens or closes a field.
TOO_LONG_ODD: Final = _Skipped(TOO_LONG.code, TOO_LONG.message, odd_quotes=True)
UNCLOSED: Final = _Skipped("unclosed_quote",
                           "A quoted field of this CSV record is never closed; skipped.")
Line = bytes | _Skipped


async def _chunks(request: web.Request, idle_timeout: float) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive; RequestTimeout when none come for `idle_timeout`."""
    content = request.content
    while True:
        try:
            async with asyncio.timeout(idle_timeout if idle_timeout > 0 else None):
                chunk = await content.readany()
        except TimeoutError:
            raise RequestTimeout(
                f"No part of the body arrived for {idle_timeout:g} seconds."
            ) from None
        if not chunk:
            return
        yield chunk


async def _lines(
    request: web.Request, max_line: int, max_body: int, idle_timeout: float = 0.0
) -> AsyncGenerator[list[Line], None]:
    """Batches of raw lines as the body streams in (a line ends at '\\n').

    Each piece of the body is split at once (`bytes.split`, no Python loop per line);
    only the line that straddles two pieces is put together by hand.
    """
    pending = bytearray()  # the start of a line whose end has not arrived yet
    skipping = False  # inside an over-long line: drop bytes until its end
    skipped_quotes = 0  # quotes dropped with it: a CSV reader must know if one is open
    total = 0
    async for chunk in _chunks(request, idle_timeout):
        total += len(chunk)
        if total > max_body:
            raise PayloadTooLarge(f"The body exceeds {max_body} bytes.")
        parts = chunk.split(b"\n")
        rest = parts.pop()  # after the last newline: the start of the next line
        if parts:
            first: Line
            if skipping:
                skipping = False
                first = _too_long(skipped_quotes + parts[0].count(b'"'))
            else:
                pending += parts[0]
                first = bytes(pending) if len(pending) <= max_line \
                    else _too_long(pending.count(b'"'))
            pending.clear()
            batch: list[Line] = [first]
            batch += parts[1:]
            if max(map(len, parts)) > max_line:
                batch[1:] = [_too_long(part.count(b'"')) if len(part) > max_line else part
                             for part in parts[1:]]
            yield batch
        if skipping:
            skipped_quotes += rest.count(b'"')
        else:
            pending += rest
            if len(pending) > max_line:
                skipping = True
                skipped_quotes = pending.count(b'"')
                pending.clear()
    if skipping:
        yield [_too_long(skipped_quotes)]
    elif pending:
        yield [bytes(pending)]




def _encoded_refs(refs: list[Any], dumps: Callable[[Any], bytes]) -> tuple[bytes, list[bytes]]:
    """The answer line's template and each ref for it, so that the line is byte for byte
    what `dumps(ref)` in `_ANSWER` gives. When every ref of the chunk is a plain string
    (`_PLAIN_REFS`), they are joined, checked, encoded and cut in one pass each, a few C
    calls for the whole chunk, and the template holds the quotes; otherwise one dumps()
    a ref."""
    if refs:
        try:
            joined = "\n".join(refs)
        except TypeError:  # a number, a null or a long ref's written form: not a str
            pass
        else:  # no ref holds a '\n' of its own: each cut is between two refs
            if joined.count("\n") == len(refs) - 1 and _PLAIN_REFS.fullmatch(joined):
                return _PLAIN_ANSWER, joined.encode().split(b"\n")
    return _ANSWER, list(map(dumps, refs))


def _clean(raw: bytes) -> str:
    """The line as text, without its CR, surrounding blanks or a UTF-8 byte order mark."""
    return decode_line(raw).strip().lstrip("\ufeff").strip()


def _error(line: int, ref: Any, field: str | None, code: str, message: str) -> dict[str, Any]:
    return {"line": line, "ref": ref,
            "error": {"field": field, "code": code, "message": message}}


class _Parser:
    """Turns one raw line into (ref, fields) or an error; NDJSON or CSV."""

    def __init__(self, csv_mode: bool) -> None:
        # Normalised names and dates of this request's earlier lines, for reuse; it
        # lives and dies with the request, and is bounded.
        self.memo = QueryMemo()
        self.csv_mode = csv_mode
        self.columns: dict[str, int] | None = None
        self.delimiter = ","
        self._open: bytearray | None = None  # a CSV record whose quoted field goes on
        self._skip_quotes = False  # inside an over-long record, until its quote closes

    def header(self, text: str) -> None:
        """Find the columns; 422 when they cannot form a complete key on any line."""
        self.delimiter = max((";", ",", "\t"), key=text.count)
        try:
            cells = next(csv.reader([text], delimiter=self.delimiter), [])
        except csv.Error:
            cells = []
        columns = match_headers(cells, MEMBER_ALIASES)
        missing = _missing_columns(columns)
        if missing:
            # Never quote the header: a body sent without one starts with a member's row.
            raise InvalidIdentifiers(
                "The CSV header row does not name the columns of a complete key.",
                errors=missing,
            )
        self.columns = columns

    def records(self, lines: list[Line], max_record: int) -> list[Line]:
        """CSV: the physical lines joined into records, where a quoted field holds a
        line break (csv's own reading decides). A record longer than `max_record`, or
        one whose quote never closes, is one error line: none of its pieces is read as
        a row of its own (a name's tail echoed as a ref)."""
        records: list[Line] = []
        for raw in lines:
            odd = raw.odd_quotes if isinstance(raw, _Skipped) else raw.count(b'"') % 2 == 1
            if self._skip_quotes:
                # Inside the quoted field of an over-long record: skipped until a line
                # with an odd number of quotes closes it.
                self._skip_quotes = not odd
                continue
            if self._open is not None:
                if isinstance(raw, _Skipped) or len(self._open) + 1 + len(raw) > max_record:
                    records.append(TOO_LONG)
                    self._open = None
                    self._skip_quotes = not odd  # still inside the field
                    continue
                raw = bytes(self._open + b"\n" + raw)
                self._open = None
            elif isinstance(raw, _Skipped):
                records.append(raw)
                self._skip_quotes = odd  # an over-long line that opened a field
                continue
            if b'"' in raw and self._continues(raw):
                self._open = bytearray(raw)
                continue
            records.append(raw)
        return records

    def end(self) -> list[Line]:
        """At the end of the body: the record left open, if any, as an error."""
        unclosed = self._open is not None or self._skip_quotes
        self._open, self._skip_quotes = None, False
        return [UNCLOSED] if unclosed else []

    def _continues(self, raw: bytes) -> bool:
        """True when the CSV record of `raw` goes on past its line break: csv's reader
        asks for the next line only when the line ended inside a quoted field."""
        asked = False

        def one_line() -> Iterator[str]:
            nonlocal asked
            yield decode_line(raw) + "\n"
            asked = True

        try:
            next(csv.reader(one_line(), delimiter=self.delimiter), None)
        except csv.Error:
            return False
        return asked

    def fields(self, text: str) -> dict[str, Any]:
        if not self.csv_mode:
            value = orjson.loads(text)
            if not isinstance(value, dict):
                raise TypeError("not an object")
            return value
        assert self.columns is not None
        cells = next(csv.reader([text], delimiter=self.delimiter), [])
        return {name: cells[i].strip() for name, i in self.columns.items() if i < len(cells)}


def _missing_columns(columns: Mapping[str, int]) -> list[dict[str, str | None]]:
    if not columns.keys() & {"nir", "birth_date", "last_name", "first_name"}:
        return [_HEADER_ERROR]
    missing = ["birth_date"] if "birth_date" not in columns else []
    if "nir" not in columns:
        missing += [f for f in ("last_name", "first_name") if f not in columns]
    return [{"field": f, "code": "missing_column",
             "message": f"No column for {f}; accepted headers: {_accepted(f)}."}
            for f in missing]


def _accepted(field: str) -> str:
    return ", ".join([field, *MEMBER_ALIASES[field][:4]])


_HEADER_ERROR: Final[dict[str, str | None]] = {
    "field": None, "code": "invalid_header",
    "message": "The first line must be a header row naming ref, nir, birth_date, last_name, "
    "first_name (or their French names: NIR, DATE_NAISSANCE, NOM, PRENOM).",
}


def _ref(value: Any, raw: bytes) -> tuple[Any, bool]:
    """The ref to echo and whether it is acceptable (docs/design.md §5: a string or a
    number of at most 128 characters, as written in the line `raw`)."""
    if value is None:
        return None, True
    if isinstance(value, bool):
        return None, False
    if isinstance(value, str) and len(value) <= MAX_REF_CHARS:
        return value, True
    if type(value) is int:
        return value, True  # orjson reads an integer of up to 20 digits, exactly
    if isinstance(value, float):
        # What counts is the number as written: a 201-digit one is read as the float
        # 1e+200, whose text is short. Echoed as written, too (not 1e+200).
        written = _written_ref_number(raw)
        if written is not None and len(written) <= MAX_REF_CHARS:
            return orjson.Fragment(written), True
    return None, False


def _written_ref_number(raw: bytes) -> str | None:
    """The text of the `ref` number of an NDJSON line (the slow path of rare lines)."""
    try:
        fields = json.loads(decode_line(raw), parse_int=str, parse_float=str)
    except (ValueError, RecursionError):
        return None
    written = fields.get("ref") if isinstance(fields, dict) else None
    return written if isinstance(written, str) else None


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
        request.app[METRICS].rate_limited.labels(route_label(request)).inc()
        raise RateLimited(wait)
    request.app[INDEX].checker  # noqa: B018 - 503 now, not halfway through the answer
    parser = _Parser(content_type in CSV_TYPES)
    body = _lines(request, settings.max_batch_line_bytes, settings.max_batch_bytes,
                  settings.body_timeout)
    async with contextlib.aclosing(body) as lines:
        # A CSV header that names no usable column would make every line an error: say
        # so once, as a 422, before the answer starts.
        first = await _read_header(lines, parser) if parser.csv_mode else []
        return await _stream(request, key, parser, first, lines)


# A stream opened before its key was revoked ends at the first chunk it answers after
# the revocation is this old (plus at most one pacing wait): the key is looked up again,
# by its token, at most this often (docs/operations.md, revoking a key).
REVOCATION_CHECK_SECONDS: Final = 1.0


class _KeyRevoked(Exception):
    """The key of a stream in flight was revoked."""


def _revocation_watch(request: web.Request) -> Callable[[], bool]:
    """A check that the request's key is still live, cheap enough to call per chunk."""
    store, token = request.app[KEYS], bearer_token(request)
    checked = time.monotonic()

    def still_live() -> bool:
        nonlocal checked
        now = time.monotonic()
        if now - checked < REVOCATION_CHECK_SECONDS:
            return True
        checked = now
        return token is not None and store.authenticate(token) is not None

    return still_live


async def _stream(
    request: web.Request, key: ApiKey, parser: _Parser, first: list[Line],
    lines: AsyncIterator[list[Line]],
) -> web.StreamResponse:
    """Answer `first`, then every batch of `lines`, as they come; then the summary."""
    settings = request.app[SETTINGS]
    response = web.StreamResponse(headers={"Cache-Control": "no-store"})
    response.content_type = "application/x-ndjson"
    await response.prepare(request)
    # `found` counts every level; then one count per level (docs/design.md §5).
    counts = {"lines": 0, "found": 0, "errors": 0, "strong": 0, "weak": 0, "similar": 0}
    store = request.app[KEYS]
    store.record_usage(key.id, requests=1)

    still_live = _revocation_watch(request)

    async def answer(raw_lines: list[Line]) -> None:
        if parser.csv_mode:
            raw_lines = parser.records(raw_lines, settings.max_batch_line_bytes)
        chunk = settings.batch_chunk_lines
        for start in range(0, len(raw_lines), chunk):
            if not still_live():
                raise _KeyRevoked
            out = _process(request, parser, raw_lines[start:start + chunk], counts)
            if out:
                used = out.count(b"\n")
                await _pace(request, key, used)
                store.record_usage(key.id, records=used)
                await response.write(out)

    try:
        await answer(first)
        async for raw_lines in lines:
            await answer(raw_lines)
        await answer(parser.end())
    except PayloadTooLarge as exc:
        await response.write(_abort_line(counts, "body_too_large", exc.detail))
    except _KeyRevoked:
        response.force_close()
        await response.write(_abort_line(counts, "key_revoked", "The API key was revoked: "
                                         "the rest of the body was not read."))
    except RequestTimeout as exc:
        # The client stalled: say so, then close rather than wait for the rest.
        response.force_close()
        await response.write(_abort_line(counts, "body_timeout", exc.detail))
    except HttpProcessingError as exc:
        # The body broke its framing midway (a bad chunk): the client's fault; what is
        # left of the connection cannot be trusted. The message may quote the bytes.
        log.warning("batch body unreadable", extra={"lines": counts["lines"],
                                                    "error": type(exc).__name__})
        response.force_close()
        await response.write(_abort_line(counts, "invalid_body",
                                         "The rest of the body could not be read."))
    except asyncio.CancelledError:
        log.info("batch ended early", extra={"lines": counts["lines"]})
        raise
    except ConnectionResetError:
        # The client went away mid-answer: nothing more can be written, and nothing
        # went wrong on our side (re-raising would make aiohttp log an error).
        log.info("batch ended early", extra={"lines": counts["lines"]})
        return response
    except Exception:
        # The answer has started: no problem document can replace it now. The
        # traceback names our code, never the line being processed.
        log.exception("batch failed", extra={"lines": counts["lines"]})
        await response.write(_abort_line(counts, "internal_error",
                                         "Internal error: the rest of the body was not read."))
    metrics = request.app[METRICS]
    metrics.bulk_records.labels("found").inc(counts["found"])
    metrics.bulk_records.labels("error").inc(counts["errors"])
    metrics.bulk_records.labels("not_found").inc(
        counts["lines"] - counts["found"] - counts["errors"])
    await response.write(orjson.dumps({"summary": counts}) + b"\n")
    await response.write_eof()
    return response


async def _read_header(lines: AsyncIterator[list[Line]], parser: _Parser) -> list[Line]:
    """Read up to the CSV header and parse it; the lines that came after it."""
    async for raw_lines in lines:
        for position, raw in enumerate(raw_lines):
            if isinstance(raw, _Skipped):
                raise InvalidIdentifiers("The first line of the CSV body is not a header row.",
                                         errors=[_HEADER_ERROR])
            text = _clean(raw)
            if text:
                parser.header(text)
                return raw_lines[position + 1:]
    return []


def _abort_line(counts: dict[str, int], code: str, message: str) -> bytes:
    """The error line that ends a batch early; counted like any other line."""
    counts["lines"] += 1
    counts["errors"] += 1
    return orjson.dumps(_error(counts["lines"], None, None, code, message)) + b"\n"


async def _pace(request: web.Request, key: ApiKey, records: int) -> None:
    """Spend one unit per record; when the key's budget runs dry, slow down, don't fail.

    Spent in parts no larger than the bucket: a chunk of more records than the key's
    burst could otherwise never be paid for, and the batch would wait forever.
    """
    capacity = max(1, key.rate_per_minute)
    while records > 0:
        part = min(records, capacity)
        while (wait := take_from_key(request, key, part)) > 0:
            await asyncio.sleep(min(wait, 5.0))
        records -= part


def _process(
    request: web.Request, parser: _Parser, lines: list[Line], counts: dict[str, int]
) -> bytes:
    """Answers for a chunk of raw lines, one vectorised lookup for the whole chunk."""
    # Every line answered (all but the blank ones) takes the next line number: the
    # error lines, encoded, by number; the queries and their refs, in order.
    errors: dict[int, bytes] = {}
    queries: list[tuple[str, ...]] = []
    refs: list[Any] = []
    ndjson = not parser.csv_mode
    memo = parser.memo
    loads = orjson.loads
    dumps: Callable[[Any], bytes] = orjson.dumps
    first_line = line = counts["lines"]
    try:
        for raw in lines:
            if isinstance(raw, _Skipped):
                line += 1
                errors[line] = dumps(_error(line, None, None, raw.code, raw.message))
                continue
            fields: Any = None
            if ndjson:
                # Nearly every NDJSON line is clean UTF-8 JSON, which orjson reads from
                # the bytes as they are (JSON blanks around it included). Anything else
                # (blank, a byte order mark, cp1252, not JSON) fails here and takes the
                # path below, so the answer is the same either way; this skips a decode
                # and two copies.
                try:
                    fields = loads(raw)
                except orjson.JSONDecodeError:
                    pass
            if fields is None:
                text = _clean(raw)
                if not text:
                    continue
                line += 1
                try:
                    fields = parser.fields(text)
                except (orjson.JSONDecodeError, TypeError, csv.Error):
                    what = "a CSV row" if parser.csv_mode else "a JSON object"
                    errors[line] = dumps(_error(line, None, None, "invalid_line",
                                                f"This line is not {what}."))
                    continue
            else:
                line += 1
                if not isinstance(fields, dict):
                    errors[line] = dumps(_error(line, None, None, "invalid_line",
                                                "This line is not a JSON object."))
                    continue
            ref = fields.get("ref")
            if ref is not None and not (type(ref) is str and len(ref) <= MAX_REF_CHARS):
                ref, ref_ok = _ref(ref, raw)  # not a short string: the general rule
                if not ref_ok:
                    errors[line] = dumps(_error(
                        line, None, "ref", "invalid_ref",
                        "ref must be a string or number of at most 128 characters."))
                    continue
            try:
                # canonical_keys reads only the QUERY_FIELDS of the mapping: no copy.
                keys = canonical_keys(fields, memo=memo)
            except QueryError as exc:
                first: IdentityError = exc.errors[0]
                errors[line] = dumps(_error(line, ref, first.field, first.code, first.message))
                continue
            queries.append(keys)
            refs.append(ref)
    finally:
        counts["lines"] = line
    verdicts: list[Verdict] = request.app[INDEX].checker.check_keys(queries) if queries else []
    counts["errors"] += len(errors)
    counts["found"] += sum(map(_FOUND, verdicts))
    for level, count in Counter(map(_MATCH, verdicts)).items():
        if level is not None:
            counts[level] += count
    # The Checker returns the same verdict object to every query with the same answer
    # (indexer.index.lookup): each is encoded once per chunk, and a line is its number and
    # ref followed by those bytes, byte for byte what dumps({"line": line, "ref": ref,
    # **verdict}) gives. The lines are formatted without a Python loop (map and zip).
    by_id = dict(zip(map(id, verdicts), verdicts, strict=True))
    tails = {key: dumps(verdict)[1:] for key, verdict in by_id.items()}
    numbers = range(first_line + 1, line + 1)
    verdict_numbers = [n for n in numbers if n not in errors] if errors else numbers
    template, encoded_refs = _encoded_refs(refs, dumps)
    answers = list(map(template.__mod__, zip(
        verdict_numbers, encoded_refs, map(tails.__getitem__, map(id, verdicts)),
        strict=True)))
    if errors:
        verdict_lines = iter(answers)
        answers = [errors[n] if n in errors else next(verdict_lines) for n in numbers]
    if answers:
        answers.append(b"")  # the last line's newline, without copying the whole chunk
    return b"\n".join(answers)
