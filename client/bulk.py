"""`exposure-client`: an insurer checks its member file against the service (docs/design.md §5).

    exposure-client check MEMBERS.csv --url URL --out RESULTS.csv [--api-key-file F]

The member file is read as it is sent: `;`, `,` or tab separated (sniffed from the
header), UTF-8 or cp1252 (line by line), French or English headers recognised by the
indexer's `match_headers`, a `ref` column. Each member goes to `POST /v1/check/batch`
as one NDJSON line holding only `ref` and the four query fields: the client parses the
CSV itself rather than forwarding it, so that other columns of the insurer's file
(addresses, phone numbers...) never leave the insurer, quoted fields with line breaks
read right, and answer line N is known to be member N of the request.

Resuming: the service answers the lines of a request in order, so the answers received
so far say exactly which members are done. After a connection loss, a 429 or a 5xx,
the next request starts at the first member without an answer (the byte offset of its
row is kept until it is answered). Each member is written to RESULTS.csv exactly once,
in file order. A lookup has no side effect, so a line sent twice (answered by the
service, but the answer lost on the way back) is harmless. Requests are also cut at
`--max-request-bytes`, under the service's body limit, so a file of tens of millions
of members is sent as a sequence of requests.

What it must never do: write, print or log an identifier. RESULTS.csv holds the
caller's own `ref` and the verdict; messages name line numbers, column names and
error codes, never a cell.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import email.utils
import os
import random
import re
import ssl
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncGenerator, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Protocol

import aiohttp
import orjson

from client.cells import SafeRowWriter
from indexer import __version__
from indexer.core.columns import MEMBER_ALIASES, decode_line, match_headers
from indexer.core.records import DATA_CLASSES

__all__ = ["API_KEY_ENV", "RESULT_COLUMNS", "main"]

API_KEY_ENV: Final = "EXPOSURE_API_KEY"
BATCH_PATH: Final = "/v1/check/batch"
RESULT_COLUMNS: Final = ("ref", "found", "match", "sources", "exposed", "error")

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # the service could not be used (unreachable, refused, broken answer)
EXIT_USAGE: Final = 2  # the command line, the key or the member file is wrong

_HEAD_BYTES: Final = 64 << 10
_BODY_CHUNK: Final = 64 << 10  # bytes of NDJSON per write of the upload
_DEFAULT_REQUEST_BYTES: Final = 256 << 20  # well under the service's 1 GiB default
_MIN_REQUEST_BYTES: Final = 4 << 10
_DELIMITERS: Final = (";", ",", "\t")
_SEP_HINT: Final = re.compile(rb"sep=([;,\t|])\r?\n", re.IGNORECASE)
_PROGRESS_EVERY: Final = 2048
_MAX_RETRY_AFTER: Final = 600.0
_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})


class ClientError(Exception):
    """A failure to report and exit with `exit_code`; the message never quotes a cell."""

    exit_code = EXIT_FAILED


class UsageError(ClientError):
    exit_code = EXIT_USAGE


class _Retry(Exception):
    """This request failed in a way that a later request, from the last answer, may not."""

    def __init__(self, reason: str, retry_after: float | None = None, *,
                 shrink: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.shrink = shrink


# --------------------------------------------------------------------------- member file


@dataclass(frozen=True, slots=True)
class MemberLayout:
    """How to read the member file: delimiter, recognised columns, where the data starts."""

    path: Path
    delimiter: str
    columns: Mapping[str, int]  # "ref" and some of QUERY_FIELDS -> column index
    data_offset: int




def detect_layout(path: Path) -> MemberLayout:
    """Delimiter and columns from the header line; `UsageError` when they cannot be used."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the member file ({exc.strerror or exc})") from exc
    offset = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    while head.startswith((b"\n", b"\r\n"), offset):  # blank lines before the header
        offset = head.index(b"\n", offset) + 1
    candidates: tuple[str, ...] = _DELIMITERS
    # Excel writes (and reads) a first line "sep=;" naming the delimiter.
    hint = _SEP_HINT.match(head, offset)
    if hint:
        candidates = (hint.group(1).decode("ascii"),)
        offset = hint.end()
    end = head.find(b"\n", offset)
    if end < 0 and len(head) == _HEAD_BYTES:
        raise UsageError(f"{path}: no line ends in the first 64 KiB; is it a CSV file?")
    header = decode_line(head[offset:] if end < 0 else head[offset:end]).rstrip("\r")
    data_offset = len(head) if end < 0 else end + 1
    if not header.strip():
        raise UsageError(f"{path}: the file is empty; it needs a header line and one row "
                         "per member")
    best: tuple[tuple[int, int], str, dict[str, int]] | None = None
    for delimiter in candidates:
        cells = next(csv.reader([header], delimiter=delimiter), [])
        if len(cells) < 2:
            continue
        columns = match_headers(cells, MEMBER_ALIASES)
        score = (len(columns), len(cells))
        if best is None or score > best[0]:
            best = (score, delimiter, columns)
    if best is None:
        raise UsageError(f"{path}: cannot tell the delimiter: the header line does not split "
                         "into columns on ';', ',' or tab")
    _, delimiter, columns = best
    has_key = "nir" in columns or ("last_name" in columns and "first_name" in columns)
    if "ref" not in columns or "birth_date" not in columns or not has_key:
        # Field names only: if the file has no header, its first line is a member.
        found = ", ".join(f"{name} (column {i + 1})" for name, i in columns.items())
        raise UsageError(
            f"{path}: the header line needs a ref column, a birth date column and either "
            "a NIR column or last name and first name columns (e.g. "
            "ref;nir;last_name;first_name;birth_date, or ref;NIR;NOM;PRENOM;DATE_NAISSANCE); "
            f"recognised: {found or 'none'}"
        )
    return MemberLayout(path, delimiter, columns, data_offset)


@dataclass(frozen=True, slots=True)
class MemberRow:
    start: int  # byte offset of the row in the file
    end: int  # byte offset just past it
    ref: str
    query: dict[str, str]  # the non-empty query fields


def read_members(layout: MemberLayout, start: int) -> Generator[MemberRow, None, None]:
    """The members from byte offset `start` (a row start), blank lines skipped."""
    columns = [(name, index) for name, index in layout.columns.items() if name != "ref"]
    ref_index = layout.columns["ref"]
    with layout.path.open("rb") as handle:
        handle.seek(start)
        position = start

        def lines() -> Iterator[str]:
            nonlocal position
            for raw in handle:
                position += len(raw)
                yield decode_line(raw)

        # csv.reader pulls one physical line at a time and never reads ahead, so after
        # each row `position` is exactly the end of that row (quoted line breaks too).
        reader = csv.reader(lines(), delimiter=layout.delimiter)
        row_start = position
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                # csv's messages name the fault ("field larger than field limit"), not the
                # field.
                raise UsageError(f"{layout.path}: a row near byte {row_start} is not valid "
                                 f"CSV ({exc})") from None
            row_end = position
            if any(cell.strip() for cell in cells):
                ref = cells[ref_index].strip() if ref_index < len(cells) else ""
                query = {name: cells[index].strip() for name, index in columns
                         if index < len(cells) and cells[index].strip()}
                yield MemberRow(row_start, row_end, ref, query)
            row_start = row_end


def count_lines(path: Path) -> int:
    """Lines in the file (an estimate of members for the progress bar), read in blocks."""
    total = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            total += block.count(b"\n")
    return total


# --------------------------------------------------------------------------- results


# What the service may send, by contract (docs/design.md §4-5): anything else in a cell
# of RESULTS.csv would be whatever a hostile or broken server chose to put there.
MATCH_LEVELS: Final = frozenset({"strong", "weak", "similar"})
_SOURCE_ID: Final = re.compile(r"[a-z0-9-]{1,64}")
_NAME: Final = re.compile(r"[a-z][a-z_]{0,63}")  # data classes and error codes
_FIELD: Final = re.compile(r"[a-z_][a-z0-9_.\[\]]{0,63}")


def _expected(value: object, shape: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not shape.fullmatch(value):
        # Never quote the value: it is whatever the server sent.
        raise ClientError(f"the service sent {what} outside the expected vocabulary; "
                          "is --url the exposure lookup service?")
    return value


def result_row(ref: str, answer: Mapping[str, Any]) -> list[str]:
    """One RESULTS.csv row from one answer line: the caller's ref and the verdict only,
    every value the server sent checked against the contract's vocabulary."""
    if answer.get("found") is False and not answer.get("sources") and "error" not in answer \
            and answer.get("match") is None:
        return [ref, "false", "", "", "", ""]  # most lines: keep them cheap
    error = answer.get("error")
    if isinstance(error, Mapping):
        code = _expected(error.get("code"), _NAME, "an error code")
        where = error.get("field")
        if where is not None:
            _expected(where, _FIELD, "an error field")
        return [ref, "", "", "", "", f"{where}:{code}" if where else code]
    sources = answer.get("sources")
    if not isinstance(sources, list) or not isinstance(answer.get("found"), bool):
        raise ClientError("the service sent an answer line without 'found' and 'sources'")
    match = answer.get("match")
    if match is not None and match not in MATCH_LEVELS:
        raise ClientError("the service sent a match level outside the expected vocabulary; "
                          "is --url the exposure lookup service?")
    exposed: set[str] = set()
    ids: list[str] = []
    for source in sources:
        if not isinstance(source, Mapping):
            raise ClientError("the service sent a source that is not a JSON object")
        ids.append(_expected(source.get("id"), _SOURCE_ID, "a source id"))
        classes = source.get("exposed", ())
        if not isinstance(classes, list):
            raise ClientError("the service sent 'exposed' that is not a list")
        exposed.update(_expected(name, _NAME, "a data class") for name in classes)
    known = [name for name in DATA_CLASSES if name in exposed]
    newer = sorted(exposed.difference(DATA_CLASSES))  # a vocabulary grown since this client
    return [
        ref,
        "true" if answer["found"] else "false",
        match or "",
        "|".join(ids),
        "|".join(known + newer),
        "",
    ]


@dataclass(slots=True)
class Tally:
    members: int = 0
    found: int = 0
    strong: int = 0
    similar: int = 0
    errors: int = 0

    def add(self, row: Sequence[str]) -> None:
        self.members += 1
        if row[5]:
            self.errors += 1
        elif row[1] == "true":
            self.found += 1
            self.strong += row[2] == "strong"
            self.similar += row[2] == "similar"


class RowWriter(Protocol):
    def writerow(self, row: Iterable[str], /) -> object: ...


class Progress(Protocol):
    def update(self, n: int) -> object: ...
    def close(self) -> None: ...


class _NoProgress:
    def update(self, n: int) -> object:
        return None

    def close(self) -> None:
        return None


def _progress(layout: MemberLayout, enabled: bool) -> Progress:
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    # Lines, not members: a quoted field may hold a line break. Close enough for an ETA.
    total = max(0, count_lines(layout.path) - 1)
    return tqdm(total=total, unit="rec", unit_scale=True, file=sys.stderr, desc="checked",
                smoothing=0.05)


def _say(message: str) -> None:
    # tqdm.write keeps the bar intact when one is shown; it falls back to plain print.
    from tqdm import tqdm

    tqdm.write(f"exposure-client: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- the run


@dataclass(slots=True)
class _Request:
    """One POST: the members sent and not yet answered, and where the sender stopped."""

    inflight: deque[tuple[int, str]] = field(default_factory=deque)  # (row start, ref)
    next_offset: int = 0  # just past the last row sent
    exhausted: bool = False  # the sender reached the end of the file
    answered: int = 0
    # A fault of the member file met while sending. aiohttp would report an exception
    # raised in the body as a connection error; it is kept here and raised as itself.
    failure: ClientError | None = None


@dataclass
class BatchRun:
    """Sends a member file to the batch route and writes the answers, resuming as needed."""

    layout: MemberLayout
    url: str
    api_key: str
    results: RowWriter
    progress: Progress
    retries: int = 8
    read_timeout: float = 300.0
    max_request_bytes: int = _DEFAULT_REQUEST_BYTES
    ssl_context: ssl.SSLContext | None = None
    tally: Tally = field(default_factory=Tally)
    offset: int = 0  # the first member not yet answered starts here
    _unreported: int = 0

    async def run(self) -> Tally:
        self.offset = self.layout.data_offset
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=self.read_timeout)
        headers = {"Authorization": f"Bearer {self.api_key}",
                   "User-Agent": "exposure-client/1"}
        failures = 0
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            while True:
                before = self.tally.members
                try:
                    if await self._request(session):
                        break
                    failures = 0
                    continue
                except _Retry as retry:
                    progressed = self.tally.members > before
                    failures = 0 if progressed else failures + 1
                    if retry.shrink:
                        self.max_request_bytes = max(_MIN_REQUEST_BYTES,
                                                     self.max_request_bytes // 2)
                    if failures > self.retries:
                        raise ClientError(f"giving up after {failures} attempts without "
                                          f"progress: {retry.reason}") from None
                    delay = retry.retry_after
                    if delay is None:
                        # Exponential backoff with jitter, so that clients cut off together
                        # do not come back together.
                        delay = min(60.0, 0.5 * 2 ** failures) * random.uniform(0.5, 1.0)
                    _say(f"{retry.reason} after {self.tally.members:,} members; resuming "
                         f"from there in {delay:.1f} s")
                    await asyncio.sleep(delay)
        self._report_progress(force=True)
        return self.tally

    async def _request(self, session: aiohttp.ClientSession) -> bool:
        """One POST from `self.offset`; True when the file is done, False to continue."""
        request = _Request(next_offset=self.offset)
        body = self._body(request)
        try:
            async with session.post(
                self.url, data=body, ssl=self.ssl_context if self.ssl_context else True,
                headers={"Content-Type": "application/x-ndjson"},
            ) as response:
                if response.status != 200:
                    await self._refused(response)
                await self._read_answers(response, request)
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            if request.failure is not None:
                raise request.failure from None
            if isinstance(exc, aiohttp.ClientConnectorError):
                why = exc.os_error.strerror or type(exc.os_error).__name__
                raise _Retry(f"cannot connect to the service ({why})") from None
            raise _Retry(f"connection lost ({type(exc).__name__})") from None
        finally:
            await body.aclose()
        if request.failure is not None:
            raise request.failure
        if request.inflight:
            raise ClientError(f"the service ended a request with {len(request.inflight):,} "
                              "members unanswered")
        return request.exhausted

    async def _body(self, request: _Request) -> AsyncGenerator[bytes, None]:
        """The NDJSON lines of one request, read from the file as the upload goes.

        The file is read synchronously in 64 KiB steps: local reads are short next to
        the network, and a generator suspended only at `yield` can always be closed.
        """
        buffer = bytearray()
        sent = 0
        flush_at = min(_BODY_CHUNK, self.max_request_bytes)
        with contextlib.closing(read_members(self.layout, request.next_offset)) as rows:
            try:
                for row in rows:
                    request.inflight.append((row.start, row.ref))
                    request.next_offset = row.end
                    buffer += orjson.dumps({"ref": row.ref, **row.query})
                    buffer += b"\n"
                    if len(buffer) >= flush_at:
                        sent += len(buffer)
                        chunk = bytes(buffer)
                        buffer.clear()
                        yield chunk
                        if sent >= self.max_request_bytes:
                            return  # the rest goes in the next request
            except ClientError as exc:
                # End the body cleanly: the rows sent so far are answered, then
                # `_request` raises this.
                request.failure = exc
        request.exhausted = request.failure is None
        if buffer:
            yield bytes(buffer)

    async def _refused(self, response: aiohttp.ClientResponse) -> None:
        """Turn a non-200 answer into a retry or an error; never returns."""
        status = response.status
        detail = await _problem_detail(response)
        response.close()  # stop the upload: the service will not read it
        if status in _RETRY_STATUSES:
            what = "rate limited" if status == 429 else f"service answered {status}"
            raise _Retry(what, _retry_after(response.headers.get("Retry-After")))
        if status in (401, 403):
            raise UsageError(f"the service refused the API key ({status}: {detail})")
        if status == 404:
            raise UsageError(f"{self.url} was not found (404): is --url the service's base "
                             "URL?")
        raise ClientError(f"the service answered {status}: {detail}")

    async def _read_answers(self, response: aiohttp.ClientResponse, request: _Request) -> None:
        """Write the answer lines as they come; stop at a cut, a broken line or the end."""
        summary: Any = None
        pending = b""
        # Whole chunks split here, rather than readline() per answer: a third of the time.
        async for chunk in response.content.iter_any():
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()  # b"" when the chunk ended a line
            for raw in lines:
                answer = _answer_line(raw)
                if "summary" in answer:
                    summary = answer["summary"]
                    continue
                self._answered(answer, request)
            self.offset = request.inflight[0][0] if request.inflight else request.next_offset
            if self._unreported >= _PROGRESS_EVERY:
                self._report_progress()
        if pending or summary is None:
            raise _Retry("answer cut short")  # the stream ended inside a line or early
        if not isinstance(summary, dict) or summary.get("lines") != request.answered:
            raise ClientError("the service's summary does not match the lines it answered")

    def _answered(self, answer: dict[str, Any], request: _Request) -> None:
        line = answer.get("line")
        if line is None:  # a batch-level error: the body limit was reached
            error = answer.get("error") or {}
            if error.get("code") == "body_too_large":
                raise _Retry("request body above the service's limit; sending smaller "
                             "requests", 0.0, shrink=True)
            raise ClientError(f"the service stopped the batch ({error.get('code')})")
        if line != request.answered + 1 or not request.inflight:
            raise ClientError(f"the service answered line {line} where line "
                              f"{request.answered + 1} was due")
        _, ref = request.inflight.popleft()
        row = result_row(ref, answer)
        self.results.writerow(row)
        self.tally.add(row)
        request.answered += 1
        self._unreported += 1

    def _report_progress(self, force: bool = False) -> None:
        if self._unreported and (force or self._unreported >= _PROGRESS_EVERY):
            self.progress.update(self._unreported)
            self._unreported = 0


def _answer_line(raw: bytes) -> dict[str, Any]:
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ClientError("the service sent a line that is not JSON") from None
    if not isinstance(answer, dict):
        raise ClientError("the service sent a line that is not a JSON object")
    return answer


async def _problem_detail(response: aiohttp.ClientResponse) -> str:
    """The `detail` of a problem+json answer (it never quotes identifiers), else the reason."""
    try:
        body = await response.content.read(16 << 10)
        problem = orjson.loads(body)
    except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError):
        return response.reason or "no detail"
    if isinstance(problem, dict) and isinstance(problem.get("detail"), str):
        return str(problem["detail"])[:300]
    return response.reason or "no detail"


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exposure-client",
        description="Check an insurer's member file against the exposure lookup service "
        "(Viamedis/Almerys breach, January 2024).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    check = commands.add_parser(
        "check",
        help="check a member file and write RESULTS.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Send every member of MEMBERS.csv to POST /v1/check/batch and write one result row
per member, in file order, to RESULTS.csv.

MEMBERS.csv: ';', ',' or tab separated, UTF-8 or cp1252, one header line with a
ref column (your own member reference: ref, id, numero_adherent...), a birth date
column and a NIR column and/or last name and first name columns, in French or
English (nir, numero_secu, nom, prenom, date_naissance, last_name, first_name,
birth_date...). Only ref and those four fields are sent; other columns stay here.

RESULTS.csv columns: ref, found (true/false), match (strong: NIR + birth date;
weak: names + birth date; similar: a record very close to the member's, to review),
sources and exposed (|-separated breach ids and data
classes), error (field:code when the service could not use the row). No identifier
is ever written: only your ref comes back. The file is written under a temporary
name, mode 0600, and renamed when complete.

The API key comes from --api-key-file, else the environment variable
EXPOSURE_API_KEY. On 429 the client waits for Retry-After; on a lost connection or
a 502/503/504 it resumes from the last member answered.

exit status: 0 done; 1 the service could not be used; 2 bad arguments, API key or
member file.""",
        epilog="example: EXPOSURE_API_KEY=$(cat key) exposure-client check members.csv "
        "--url https://exposure.example.fr --out results.csv",
    )
    check.add_argument("members", type=Path, metavar="MEMBERS.csv", help="the member file")
    check.add_argument("--url", required=True,
                       help="the service's base URL, e.g. https://exposure.example.fr")
    check.add_argument("--out", required=True, type=Path, metavar="RESULTS.csv",
                       help="where to write the results")
    check.add_argument("--api-key-file", type=Path, metavar="F",
                       help=f"file holding the API key (default: ${API_KEY_ENV})")
    check.add_argument("--ca-file", type=Path, metavar="PEM",
                       help="CA certificate(s) to trust for an https URL (default: system)")
    check.add_argument("--retries", type=int, default=8, metavar="N",
                       help="attempts in a row without progress before giving up (default 8)")
    check.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                       help="longest silence from the service before reconnecting "
                       "(default 300)")
    check.add_argument("--max-request-bytes", type=int, default=_DEFAULT_REQUEST_BYTES,
                       metavar="N", help="split the upload into requests of about N bytes "
                       f"(default {_DEFAULT_REQUEST_BYTES >> 20} MiB)")
    check.add_argument("--private", action="store_true",
                       help="private lookups: identities are normalised, blinded "
                       "and checked here; the service sees only bucket numbers and blinded "
                       "points. It cannot say which breach or which data: sources and "
                       "exposed stay empty. The API key is optional (without one, the "
                       "anonymous per-address limit applies)")
    check.add_argument("--no-progress", action="store_true",
                       help="no progress bar (it is shown only on a terminal anyway)")
    from client.notify.cli import add_parser as add_notify_parser

    add_notify_parser(commands)
    return parser


def _api_key(path: Path | None) -> str:
    if path is not None:
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--api-key-file {path}: cannot read it ({exc})") from None
        if not key:
            raise UsageError(f"--api-key-file {path}: the file is empty")
        return key
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise UsageError(f"no API key: pass --api-key-file F or set {API_KEY_ENV} "
                         "(ask the service's operator for a key: exposure-serve keys create)")
    return key


def _batch_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--url must start with http:// or https:// (got {url!r})")
    base = url.rstrip("/")
    return base if base.endswith(BATCH_PATH) else base + BATCH_PATH


def _ssl_context(ca_file: Path | None) -> ssl.SSLContext | None:
    if ca_file is None:
        return None
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--ca-file {ca_file}: cannot load it ({exc})") from None


def check(args: argparse.Namespace) -> int:
    if args.retries < 0 or args.timeout <= 0 or args.max_request_bytes < _MIN_REQUEST_BYTES:
        raise UsageError("--retries must be >= 0, --timeout > 0 and --max-request-bytes "
                         f">= {_MIN_REQUEST_BYTES}")
    api_key: str | None
    if args.private and args.api_key_file is None and not os.environ.get(API_KEY_ENV):
        api_key = None  # private routes also serve anonymous callers, rate limited
    else:
        api_key = _api_key(args.api_key_file)
    url = _batch_url(args.url)
    context = _ssl_context(args.ca_file)
    layout = detect_layout(args.members)
    out: Path = args.out
    out_dir = out.parent if str(out.parent) else Path(".")
    if not out_dir.is_dir():
        raise UsageError(f"--out {out}: the directory {out_dir} does not exist")
    # mkstemp: mode 0600 (the results say who is in a breach) and an unfinished file
    # never takes the final name.
    handle, temp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out_dir)
    temp = Path(temp_name)
    show = sys.stderr.isatty() and not args.no_progress
    progress = _progress(layout, show)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            tally = _run(layout, url, api_key, stream, progress, args, context)
        os.replace(temp, out)
    finally:
        progress.close()
        temp.unlink(missing_ok=True)
    weak = tally.found - tally.strong - tally.similar
    levels = f"{tally.strong:,} strong, {weak:,} weak, {tally.similar:,} similar (to review)"
    print(f"exposure-client: {tally.members:,} members checked: {tally.found:,} found "
          f"({levels}), {tally.errors:,} rows with errors; results in {out}", file=sys.stderr)
    return EXIT_OK


def _run(layout: MemberLayout, url: str, api_key: str | None, stream: IO[str],
         progress: Progress, args: argparse.Namespace, context: ssl.SSLContext | None) -> Tally:
    # Every cell neutralised: a ref from the member file, or anything from the server,
    # that a spreadsheet would run as a formula (client.cells).
    writer = SafeRowWriter(csv.writer(stream, lineterminator="\n"))
    writer.writerow(RESULT_COLUMNS)
    if args.private:
        base = url.removesuffix(BATCH_PATH)
        return asyncio.run(_run_private(layout, base, api_key, writer, progress, args, context))
    assert api_key is not None
    run = BatchRun(layout, url, api_key, writer, progress, retries=args.retries,
                   read_timeout=args.timeout, max_request_bytes=args.max_request_bytes,
                   ssl_context=context)
    return asyncio.run(run.run())


async def _run_private(
    layout: MemberLayout, base_url: str, api_key: str | None, writer: RowWriter,
    progress: Progress, args: argparse.Namespace, context: ssl.SSLContext | None,
) -> Tally:
    """Private mode: normalise, blind and finalize here, in windows of members."""
    from client.private import WINDOW_QUERIES, PrivateClientError, connect
    from indexer.core.matchkeys import QueryError

    tally = Tally()
    timeout = aiohttp.ClientTimeout(sock_read=args.timeout)
    connector = aiohttp.TCPConnector(ssl=context) if context is not None else None
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            checker = await connect(base_url, session, api_key=api_key)
            members = read_members(layout, layout.data_offset)
            while window := [m for _, m in zip(range(WINDOW_QUERIES), members, strict=False)]:
                outcomes = await checker.check_many([m.query for m in window])
                for member, outcome in zip(window, outcomes, strict=True):
                    if isinstance(outcome, QueryError):
                        first = outcome.errors[0]
                        row = [member.ref, "", "", "", "", f"{first.field}:{first.code}"]
                    else:
                        row = [member.ref, "true" if outcome.found else "false",
                               outcome.match or "", "", "", ""]
                    writer.writerow(row)
                    tally.add(row)
                progress.update(len(window))
    except (aiohttp.ClientError, OSError, PrivateClientError) as exc:
        raise ClientError(f"private check failed: {exc}") from None
    return tally


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "notify":
        from client.notify import cli as notify_cli

        return notify_cli.main(args)
    try:
        return check(args)
    except ClientError as exc:
        print(f"exposure-client: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("exposure-client: interrupted; no results file written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
