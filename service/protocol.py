"""The answers aiohttp gives by itself, before any middleware, made the service's.

A request aiohttp cannot parse (a control character in the request line or in a
header, an unknown method, a bad HTTP version, too many or too long headers) never
reaches the app: aiohttp answers it itself, with a text/plain 400 that quotes the
offending line. That line may hold an identifier (a NIR in a query string, a name in
a header), and docs/design.md §2 lets none leave the request, error messages included.

`ServiceRunner` is aiohttp's `AppRunner` whose connections are served by
`QuietRequestHandler`: the same handler, but its own answers are problem documents
like every other error of the service (RFC 9457, with the security headers and
`no-store`) that quote nothing. What aiohttp logs meanwhile is stripped of the
request by service.resources.logs. It never changes an answer the app gives.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from service.errors import ApiError, BadRequest
from service.middleware import problem_response

__all__ = ["QuietRequestHandler", "ServiceRunner", "protocol_error"]


def protocol_error(status: int) -> ApiError:
    """The problem of an answer aiohttp gives by itself: its status, a fixed text."""
    if status == HTTPStatus.BAD_REQUEST:
        return BadRequest("The request is not valid HTTP/1.1 and was not read.")
    error = ApiError("Internal error." if status >= 500 else "The request was not read.")
    try:
        error.status = int(HTTPStatus(status))  # type: ignore[misc]
    except ValueError:  # a status http does not know: say it was the client's
        error.status = int(HTTPStatus.BAD_REQUEST)  # type: ignore[misc]
    return error


class QuietRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering its own errors without quoting them."""

    __slots__ = ()

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        # aiohttp's own first, without the message: it logs the error, and raises when
        # part of an answer has been sent already (nothing else can be sent then).
        super().handle_error(request, status, exc)
        response = problem_response(protocol_error(status))
        response.force_close()  # what aiohttp does: the connection's state is unknown
        return response


class _QuietServer(web.Server):
    """aiohttp's server (the protocol factory of a site), making quiet handlers."""

    def __call__(self) -> RequestHandler:
        return QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class ServiceRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer aiohttp's own errors quietly."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp builds the server from the app's private parts: take it as built and
        # only change what it makes for each connection.
        server.__class__ = _QuietServer
        return server
