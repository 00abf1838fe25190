"""Private lookups, the client side (docs/design.md §7): check an identity without showing it.

Each key of a query (the same `canonical_keys` as the service, its strong
and weak keys) is bucketed, blinded and
sent as (bucket, blinded element); the answer is finalized and looked for among the
bucket's entries. It says found or not and the key's strength, never the source.
Batches are shuffled so a person's two buckets are not sent side by side. Why, and the
injected transport: docs/private-lookups.md, "The client side". Never log, print or put
into an exception a query, a canonical key, a blind or an OPRF output.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from indexer.core.matchkeys import (
    MATCHED_ON,
    QueryError,
    canonical_keys,
    exact_keys,
    key_kind,
)
from indexer.private import oprf
from indexer.private.params import MODE, PrivateParams

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "MAX_ITEMS",
    "NOT_FOUND",
    "Evaluate",
    "HttpPrivateService",
    "ParamsChanged",
    "PrivateChecker",
    "PrivateClientError",
    "PrivateVerdict",
    "connect",
    "params_from_json",
]

MAX_ITEMS: Final = 1000  # items per /v1/private/evaluate request (contract)
# Queries blinded, sent and finalized together: bounds memory whatever the file size,
# and is the unit that is redone if the service swaps generation meanwhile.
WINDOW_QUERIES: Final = 4096
_MAX_PARAMS_RETRIES: Final = 3

Evaluate = Callable[[list[dict[str, Any]]], Awaitable[Mapping[str, Any]]]
"""Posts {"items": [...]} to /v1/private/evaluate and returns the decoded JSON answer."""
FetchParams = Callable[[], Awaitable[PrivateParams]]


class PrivateClientError(Exception):
    """The service refused or answered what a conforming service would not."""


class ParamsChanged(PrivateClientError):
    """The answers do not fit the parameters: the service now serves another index."""


@dataclass(frozen=True, slots=True)
class PrivateVerdict:
    """Found or not, and the strongest key that matched. Never the source: see above."""

    found: bool
    match: Literal["strong", "weak"] | None
    matched_on: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"found": self.found, "match": self.match, "matched_on": list(self.matched_on)}


NOT_FOUND: Final = PrivateVerdict(False, None, ())


def params_from_json(body: object) -> PrivateParams:
    """The body of GET /v1/private/params, checked: a suite or mode we do not speak is
    refused rather than answered wrongly."""
    if not isinstance(body, Mapping):
        raise PrivateClientError("the private parameters are not a JSON object")
    if body.get("suite") != oprf.SUITE or body.get("mode") != MODE:
        raise PrivateClientError(
            f"the service uses suite {body.get('suite')!r} mode {body.get('mode')!r}; "
            f"this client speaks {oprf.SUITE} {MODE}"
        )
    numbers: list[int] = []
    for name in ("bucket_bits", "output_bytes", "bucket_size"):
        value = body.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise PrivateClientError(f"the private parameter {name} is not an integer")
        numbers.append(value)
    key_id = body.get("key_id")
    if not isinstance(key_id, str):
        raise PrivateClientError("the private parameter key_id is not a string")
    bits, width, size = numbers
    if not 0 <= bits <= 32 or not 1 <= width <= oprf.OUTPUT_BYTES or size < 1:
        raise PrivateClientError("the private parameters are out of range")
    return PrivateParams(bucket_bits=bits, output_bytes=width, bucket_size=size, key_id=key_id)


@dataclass(frozen=True, slots=True)
class _Blinded:
    query: int  # position of the query in its window
    rank: int  # position of the key in canonical_keys' order (0 = strongest)
    key: str  # a canonical strong or weak key
    bucket: int
    blind: bytes
    blinded: bytes


class PrivateChecker:
    """Checks queries through a service's private routes; see the module docstring."""

    def __init__(
        self,
        params: PrivateParams,
        evaluate: Evaluate,
        *,
        refresh_params: FetchParams | None = None,
        batch_items: int = MAX_ITEMS,
        concurrency: int = 2,
        today: dt.date | None = None,
    ) -> None:
        if not 1 <= batch_items <= MAX_ITEMS:
            raise ValueError(f"batch_items must be between 1 and {MAX_ITEMS}")
        self.params = params
        self._evaluate = evaluate
        self._refresh = refresh_params
        self._batch = batch_items
        self._concurrency = max(1, concurrency)
        self._today = today

    async def check(self, fields: Mapping[str, object]) -> PrivateVerdict:
        """One query; QueryError (with field errors) when it is invalid or incomplete."""
        outcome = (await self.check_many([fields]))[0]
        if isinstance(outcome, QueryError):
            raise outcome
        return outcome

    async def check_many(
        self, queries: Sequence[Mapping[str, object]]
    ) -> list[PrivateVerdict | QueryError]:
        """One outcome per query, in order: a verdict, or the QueryError of a bad query.

        Queries go in windows of WINDOW_QUERIES; each window's keys are blinded (in a
        thread), shuffled, sent in requests of up to `batch_items` items with up to
        `concurrency` requests in flight, then finalized.
        """
        outcomes: list[PrivateVerdict | QueryError] = []
        for start in range(0, len(queries), WINDOW_QUERIES):
            outcomes.extend(await self._window(queries[start : start + WINDOW_QUERIES]))
        return outcomes

    async def _window(
        self, queries: Sequence[Mapping[str, object]]
    ) -> list[PrivateVerdict | QueryError]:
        for attempt in range(_MAX_PARAMS_RETRIES + 1):
            params = self.params
            try:
                outcomes = await self._run(queries, params)
            except ParamsChanged:
                if self._refresh is None or attempt == _MAX_PARAMS_RETRIES:
                    raise
                self.params = await self._refresh()
                continue
            if self._refresh is None:
                return outcomes
            # A generation swap between the params and the answers would give answers
            # for the wrong buckets: compare once the window is done, redo if it moved.
            self.params = await self._refresh()
            if self.params == params:
                return outcomes
        raise ParamsChanged("the service kept changing its private parameters; try later")

    async def _run(
        self, queries: Sequence[Mapping[str, object]], params: PrivateParams
    ) -> list[PrivateVerdict | QueryError]:
        outcomes, blinded = await asyncio.to_thread(self._blind_all, queries, params)
        secrets.SystemRandom().shuffle(blinded)
        chunks = [blinded[i : i + self._batch] for i in range(0, len(blinded), self._batch)]
        limit = asyncio.Semaphore(self._concurrency)

        async def send(chunk: list[_Blinded]) -> Mapping[str, Any]:
            async with limit:
                return await self._evaluate(
                    [{"bucket": b.bucket, "blinded": b.blinded.hex()} for b in chunk]
                )

        answers = await asyncio.gather(*(send(chunk) for chunk in chunks))
        hits = await asyncio.to_thread(self._finalize_all, chunks, answers, params)
        best: dict[int, _Blinded] = {}
        for hit in hits:
            if hit.query not in best or hit.rank < best[hit.query].rank:
                best[hit.query] = hit
        for index, hit in best.items():
            strong = key_kind(hit.key) == "strong"
            outcomes[index] = PrivateVerdict(
                True, "strong" if strong else "weak", MATCHED_ON["strong" if strong else "weak"])
        return outcomes

    def _blind_all(
        self, queries: Sequence[Mapping[str, object]], params: PrivateParams
    ) -> tuple[list[PrivateVerdict | QueryError], list[_Blinded]]:
        outcomes: list[PrivateVerdict | QueryError] = []
        blinded: list[_Blinded] = []
        for index, fields in enumerate(queries):
            try:
                # Strong and weak keys only: private mode does not answer `similar`
                # (docs/design.md §7; docs/matching.md says why).
                keys = exact_keys(canonical_keys(fields, today=self._today))
            except QueryError as exc:
                outcomes.append(exc)
                continue
            outcomes.append(NOT_FOUND)
            for rank, key in enumerate(keys):
                blind, element = oprf.blind(key.encode("utf-8"))
                bucket = oprf.bucket_of(key, params.bucket_bits)
                blinded.append(_Blinded(index, rank, key, bucket, blind, element))
        return outcomes, blinded

    @staticmethod
    def _finalize_all(
        chunks: Sequence[Sequence[_Blinded]], answers: Sequence[Mapping[str, Any]],
        params: PrivateParams,
    ) -> list[_Blinded]:
        hits: list[_Blinded] = []
        width = params.output_bytes
        for chunk, answer in zip(chunks, answers, strict=True):
            items = answer.get("items") if isinstance(answer, Mapping) else None
            if not isinstance(items, list) or len(items) != len(chunk):
                raise PrivateClientError("the service's answer does not have one item per item")
            for sent, item in zip(chunk, items, strict=True):
                evaluated, entries = _read_item(item, params)
                output = oprf.finalize(sent.key.encode("utf-8"), sent.blind, evaluated)
                if output[:width] in entries:
                    hits.append(sent)
        return hits


def _read_item(item: object, params: PrivateParams) -> tuple[bytes, frozenset[bytes]]:
    """The evaluated element and the entries of one answer item, checked."""
    if not isinstance(item, Mapping):
        raise PrivateClientError("an answer item is not an object")
    evaluated, entries = item.get("evaluated"), item.get("entries")
    if not isinstance(evaluated, str) or not isinstance(entries, list):
        raise PrivateClientError("an answer item lacks 'evaluated' or 'entries'")
    try:
        element = oprf.decode_element_hex(evaluated)
    except oprf.OprfError:
        raise PrivateClientError("the service answered an invalid element") from None
    width = 2 * params.output_bytes
    if len(entries) != params.bucket_size or not all(
        isinstance(e, str) and len(e) == width for e in entries
    ):
        # A conforming service answers exactly bucket_size entries of output_bytes: it
        # must have swapped to a generation with other parameters.
        raise ParamsChanged("the answer does not match the private parameters")
    try:
        return element, frozenset(bytes.fromhex(e) for e in entries)
    except ValueError:
        raise PrivateClientError("an entry is not hex") from None


# ----------------------------------------------------------------------------- HTTP


class HttpPrivateService:
    """A service's private routes over aiohttp: `params()` and `evaluate(items)`.

    A 429 is waited out (Retry-After) up to `max_retries` times; any other error
    becomes a PrivateClientError quoting the service's problem title and detail, which
    never hold identifiers.
    """

    def __init__(
        self, base_url: str, session: aiohttp.ClientSession, *, api_key: str | None = None,
        max_retries: int = 5,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._session = session
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._retries = max_retries

    async def params(self) -> PrivateParams:
        return params_from_json(await self._call("GET", "/v1/private/params", None))

    async def evaluate(self, items: list[dict[str, Any]]) -> Mapping[str, Any]:
        answer = await self._call("POST", "/v1/private/evaluate", {"items": items})
        if not isinstance(answer, Mapping):
            raise PrivateClientError("the service's answer is not a JSON object")
        return answer

    async def _call(self, method: str, path: str, body: object) -> Any:
        for _ in range(self._retries + 1):
            async with self._session.request(
                method, self._base + path, json=body, headers=self._headers
            ) as response:
                if response.status == 429:
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                answer = await response.json(content_type=None)
                if response.status != 200:
                    title = answer.get("title") if isinstance(answer, dict) else None
                    detail = answer.get("detail") if isinstance(answer, dict) else None
                    raise PrivateClientError(
                        f"{path}: the service answered {response.status} {title or ''}: "
                        f"{detail or ''}".rstrip(": ")
                    )
                return answer
        raise PrivateClientError(f"{path}: still rate limited after {self._retries} retries")


async def connect(
    base_url: str, session: aiohttp.ClientSession, *, api_key: str | None = None,
    batch_items: int = MAX_ITEMS, concurrency: int = 2,
) -> PrivateChecker:
    """A PrivateChecker talking to the service at `base_url` (fetches its params)."""
    service = HttpPrivateService(base_url, session, api_key=api_key)
    return PrivateChecker(
        await service.params(), service.evaluate, refresh_params=service.params,
        batch_items=batch_items, concurrency=concurrency,
    )
