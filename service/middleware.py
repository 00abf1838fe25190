"""The one error middleware, request ids, access log, metrics and security headers;
also the deadline of small requests (a stalled body gets a 408) and the count of
requests in flight that a graceful stop waits for.

Every exception is turned into an answer here: `ApiError` with its status, aiohttp's
own HTTP errors (404, 405...) likewise, anything else a 500 that says "internal error"
and logs the traceback without request data. The form's routes get an HTML page,
every other route `application/problem+json`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Final

import orjson
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from multidict import CIMultiDict, CIMultiDictProxy, istr

from indexer.core.matchkeys import QueryError
from service.errors import (
    ApiError,
    BadRequest,
    InvalidIdentifiers,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from service.resources.inflight import InFlight
from service.resources.logs import AccessLog
from service.resources.metrics import Metrics, route_label
from service.settings import Settings

__all__ = ["HTML_ERROR_RENDERER", "REQUEST_ID", "answer_headers", "make_middleware",
           "on_prepare", "problem_response"]

log = logging.getLogger("exposure.http")
access_log = AccessLog(log)
REQUEST_ID: Final = web.RequestKey("request_id", str)
# A client's X-Request-Id is logged and echoed: only the shape request-id generators give
# (UUIDs, nginx's $request_id, W3C trace ids: hex digits and hyphens, 16 to 64 of them)
# is kept. A NIR (13 or 15 characters), a date or a name (letters past F) never fits;
# anything else is replaced by an id of ours.
_SAFE_REQUEST_ID: Final = re.compile(r"[0-9A-Fa-f-]{16,64}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HtmlRenderer = Callable[[web.Request, ApiError], Awaitable[web.StreamResponse]]
HTML_ERROR_RENDERER: Final[web.AppKey[HtmlRenderer]] = web.AppKey("html_error_renderer")
CLIENT_CLOSED_REQUEST: Final = 499
# Routes whose body streams for as long as it is long (a bulk file of millions of lines):
# they bound each wait for the next bytes themselves instead of the whole request.
STREAMING_ROUTES: Final = frozenset({"batch"})

SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_SECURITY_ITEMS: Final = tuple((istr(name), value) for name, value in SECURITY_HEADERS.items())


def answer_headers(content_type: str, *, cache: bool = False) -> CIMultiDictProxy[str]:
    """The headers of an answer of ours, security headers included: a response made
    from them copies one dict instead of having the headers added one by one (by
    aiohttp for the content type, by `on_prepare` for the security headers)."""
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": content_type})
    if not cache:
        headers["Cache-Control"] = "no-store"
    headers.extend(_SECURITY_ITEMS)
    return CIMultiDictProxy(headers)


PROBLEM_HEADERS: Final = answer_headers("application/problem+json")


def problem_response(error: ApiError) -> web.Response:
    headers = PROBLEM_HEADERS
    if error.headers:  # Retry-After, Allow, WWW-Authenticate
        merged = CIMultiDict(PROBLEM_HEADERS)
        merged.update(error.headers)
        merged["Cache-Control"] = "no-store"
        headers = CIMultiDictProxy(merged)
    return web.Response(body=orjson.dumps(error.problem()), status=error.status,
                        headers=headers)


def _from_http_exception(exc: web.HTTPException) -> ApiError:
    if exc.status == 404:
        return NotFound("No such resource.")
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return MethodNotAllowed("Method not allowed.", headers={"Allow": allowed})
    if exc.status == 413:
        return PayloadTooLarge("The request body is too large.")
    if exc.status == 415:
        return UnsupportedMediaType("Unsupported content type.")
    error = ApiError(exc.reason or "HTTP error")
    error.status = exc.status  # type: ignore[misc]
    error.title = exc.reason  # type: ignore[misc]
    error.slug = f"http-{exc.status}"  # type: ignore[misc]
    return error


# A request id only has to be unique, not secret: a random prefix, the worker's pid
# (workers are forked after import) and a counter cost far less than reading the
# system's random source per request. The prefix is made once per process, not per
# request: os.getpid() is a system call.
_REQUEST_IDS = itertools.count(1)
_RANDOM_PREFIX: Final = secrets.token_hex(3)
_request_id_prefix = ""


def _new_process() -> None:
    global _REQUEST_IDS, _request_id_prefix
    _request_id_prefix = f"{_RANDOM_PREFIX}{os.getpid():x}-"
    _REQUEST_IDS = itertools.count(1)


_new_process()
os.register_at_fork(after_in_child=_new_process)


def _next_request_id() -> str:
    return f"{_request_id_prefix}{next(_REQUEST_IDS):x}"


def make_middleware(settings: Settings, metrics: Metrics, inflight: InFlight) -> Middleware:
    """The app's one middleware, bound to its settings, metrics and requests in flight
    (looked up once here rather than in the app's state on every request)."""
    body_timeout = settings.body_timeout

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        supplied = request.headers.get("X-Request-Id")
        request_id = supplied if supplied and _SAFE_REQUEST_ID.fullmatch(supplied) \
            else _next_request_id()
        request[REQUEST_ID] = request_id
        started = time.perf_counter()
        label = route_label(request)
        deadline = None if request.match_info.route.name in STREAMING_ROUTES else body_timeout
        inflight.started()
        try:
            response = await _handled(request, handler, deadline, request_id, label)
        finally:
            inflight.finished()
        if inflight.draining:
            response.force_close()  # shutting down: no further request on this connection
        status = response.status
        seconds = time.perf_counter() - started
        metrics.count_request(label, request.method, status, seconds)
        access_log.request(request_id, label, request.method, status, round(seconds * 1000, 3))
        return response

    return middleware


async def _handled(request: web.Request, handler: Handler, deadline: float | None,
                   request_id: str, route: str) -> web.StreamResponse:
    """The handler's answer, or the rendering of whatever it raised."""
    response: web.StreamResponse
    try:
        _refuse_encoded_body(request)
        response = await _within(deadline, handler, request)
    except QueryError as exc:
        response = await _render(request, InvalidIdentifiers(
            "Some identifiers are invalid or a complete key is missing.",
            errors=[e.as_dict() for e in exc.errors],
        ))
    except ApiError as exc:
        response = await _render(request, exc)
        if isinstance(exc, RequestTimeout | UnsupportedEncoding):
            # The rest of a stalled body may never come: do not wait for it, and do not
            # keep the connection.
            response.force_close()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = await _render(request, _from_http_exception(exc))
    except ConnectionResetError:
        # The client went away (mid-body or mid-answer): nothing can reach it, and
        # nothing went wrong on our side worth a traceback. 499 is nginx's "client
        # closed request"; it is only ever seen in our log and metrics.
        log.info("client went away", extra={"request_id": request_id, "route": route})
        response = web.Response(status=CLIENT_CLOSED_REQUEST)
    except HttpProcessingError as exc:
        # A body that breaks its framing midway (a bad chunk): the client's fault, and the
        # connection's state is unknown. Its message may quote the bytes: type only.
        log.warning("unreadable body", extra={"request_id": request_id,
                                              "error": type(exc).__name__})
        response = await _render(request, BadRequest("The request body could not be read."))
        response.force_close()
    except (ValueError, UnicodeDecodeError) as exc:
        # Decoding and parsing errors that escaped a handler are the client's fault,
        # but their text may quote the input: log the type only.
        log.warning("unhandled client error", extra={"request_id": request_id,
                                                     "error": type(exc).__name__})
        response = await _render(request, BadRequest("The request could not be parsed."))
    except Exception:
        log.exception("internal error", extra={"request_id": request_id, "route": route})
        response = await _render(request, ApiError("Internal error."))
    return response


class UnsupportedEncoding(UnsupportedMediaType):
    """415 for a compressed request body (RFC 7694: the answer names what is accepted)."""

    def __init__(self) -> None:
        super().__init__("Send the body without Content-Encoding (uncompressed).",
                         headers={"Accept-Encoding": "identity"})


def _refuse_encoded_body(request: web.Request) -> None:
    """No route takes a compressed body. aiohttp would inflate gzip and deflate as they
    stream in and fail on a bad one in the middle of a handler (a 500, an `internal_error`
    line in bulk): refuse them all before reading, with 415. The connection is closed
    after the answer: the body is left unread."""
    encoding = request.headers.get(hdrs.CONTENT_ENCODING)
    if encoding is not None and request.body_exists \
            and encoding.strip().lower() not in ("", "identity"):
        raise UnsupportedEncoding()


async def _within(seconds: float | None, handler: Handler,
                  request: web.Request) -> web.StreamResponse:
    """The handler's answer, or RequestTimeout past `seconds`.

    Outside the bulk route the body is at most a few hundred KiB and a lookup takes
    microseconds, so only a client that sends slowly (or not at all: slowloris) can
    make a request last: it gets a 408 and its connection is closed.
    """
    if seconds is None or seconds <= 0 or request.content.is_eof():
        # Nothing left to wait for from the client (no body, or all of it is here
        # already, as for nearly every small request): spare the timer.
        return await handler(request)
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            return await handler(request)
    except TimeoutError:
        if scope.expired():
            raise RequestTimeout(
                f"The request was not received within {seconds:g} seconds."
            ) from None
        raise


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Security headers and the request id on every response, streamed ones too."""
    headers = response.headers
    # Answers built on `answer_headers` have them all already: then these are look-ups
    # only (istr names: no case folding per request).
    for name, value in _SECURITY_ITEMS:
        if name not in headers:
            headers[name] = value
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        headers["X-Request-Id"] = request_id


async def _render(request: web.Request, error: ApiError) -> web.StreamResponse:
    renderer = request.app.get(HTML_ERROR_RENDERER)
    if renderer is not None and request.match_info.route.name == "form":
        page: web.StreamResponse = await renderer(request, error)
        return page
    return problem_response(error)
