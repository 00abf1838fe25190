"""The ceiling: a trivial aiohttp JSON handler in the service's own process model.

`POST /v1/check` here reads the body, decodes it as JSON and answers a constant
"not found" verdict: no validation, no lookup, no middleware. That is what aiohttp
itself costs for one small JSON request on this machine; docs/design.md §6 asks the real
`/v1/check` to reach 80% of it with the same worker count and the same load tool.

`--variant canned` is the ceiling answering a real verdict instead: the answer of a
member found by the strong key, the size of the service's (some 230 bytes, not 41),
built once. Next to the ceiling it shows what the size of a real answer costs aiohttp
and the socket by itself.

`--variant lookup` is the limit, not the ceiling: the same bare handler doing only
the work no lookup service can skip (normalise the query, fingerprint its keys, look
them up, encode the verdict) on a real index, with no middleware, authentication,
rate limit, headers, log or metrics. Its ratio to the ceiling bounds what any
`/v1/check` built on this normalisation and lookup code can reach in this process
model; the service's distance to it is the cost of its features.

Same process model as `exposure-serve` (service/cli.py): the parent holds the port
and forks N workers, each listening on its own socket bound to it (SO_REUSEPORT)
with the service's backlog, each running an `AppRunner` with the service's runner
settings (no access log, the same keep-alive and shutdown timeouts). The supervisor
itself is not imported from service/cli.py because it builds the service's app by
name; the sockets and the
settings it uses are.

    python bench/ceiling.py --port 0 --workers 2      # prints http://127.0.0.1:PORT/

Loopback only. SIGTERM or SIGINT stops the parent and its workers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.core.fingerprint import Fingerprinter, load_pepper  # noqa: E402
from indexer.core.matchkeys import canonical_keys  # noqa: E402
from indexer.index.lookup import Checker  # noqa: E402
from indexer.index.reader import IndexReader  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.supervisor import (
    BACKLOG,
    CLOSE_TIMEOUT,
    LINGERING_SECONDS,
    bind_socket,  # noqa: E402
)

HOST: Final = "127.0.0.1"
Handler = Callable[[web.Request], Awaitable[web.Response]]
NOT_FOUND: Final = orjson.dumps({"found": False, "match": None, "sources": []})


async def check(request: web.Request) -> web.Response:
    orjson.loads(await request.read())
    return web.Response(body=NOT_FOUND, content_type="application/json")


# A member found by the strong key in the synthetic Almerys dump, as /v1/check says it.
CANNED: Final = orjson.dumps({"found": True, "match": "strong", "sources": [{
    "id": "almerys-2024", "title": "Almerys", "breach_date": "2024-01-29",
    "matched_on": ["nir", "birth_date"],
    "exposed": ["name", "birth_date", "nir", "birth_rank", "insurer", "marital_status",
                "tp_guarantee"],
}]})


async def canned(request: web.Request) -> web.Response:
    orjson.loads(await request.read())
    return web.Response(body=CANNED, content_type="application/json")


async def ready(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status": "ready"}', content_type="application/json")


def lookup_handler(index: Path, pepper: Path) -> Handler:
    """The limit's handler: only the work every lookup needs (the bench's bodies are
    all valid queries, so there is no error path)."""
    checker = Checker(IndexReader.open_current(index, Fingerprinter(load_pepper(pepper))))

    async def lookup(request: web.Request) -> web.Response:
        verdict = checker.check_one(canonical_keys(orjson.loads(await request.read())))
        return web.Response(body=orjson.dumps(verdict), content_type="application/json")

    return lookup


def create_ceiling_app(handler: Handler = check) -> web.Application:
    app = web.Application(client_max_size=Settings().max_check_bytes)
    app.router.add_post("/v1/check", handler)
    app.router.add_get("/readyz", ready)
    return app


async def _serve(sock: socket.socket, args: argparse.Namespace) -> None:
    defaults = Settings()
    handler = lookup_handler(args.index, args.pepper_file) if args.variant == "lookup" \
        else canned if args.variant == "canned" else check
    runner = web.AppRunner(
        create_ceiling_app(handler), handle_signals=False, access_log=None,
        keepalive_timeout=defaults.keepalive_timeout,
        lingering_time=min(LINGERING_SECONDS, defaults.body_timeout),
        shutdown_timeout=CLOSE_TIMEOUT,
    )
    await runner.setup()
    try:
        await web.SockSite(runner, sock, backlog=BACKLOG).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--variant", choices=("trivial", "canned", "lookup"),
                        default="trivial", help="trivial: the ceiling; canned: the ceiling "
                        "answering a real verdict; lookup: the limit (needs --index and "
                        "--pepper-file)")
    parser.add_argument("--index", type=Path, help="index directory, for --variant lookup")
    parser.add_argument("--pepper-file", type=Path, help="pepper, for --variant lookup")
    args = parser.parse_args(argv)
    if args.variant == "lookup" and not (args.index and args.pepper_file):
        parser.error("--variant lookup needs --index and --pepper-file")
    # The service's sockets: with several workers, the parent holds the port and each
    # worker listens on its own socket bound to it (service/cli.py).
    sock = bind_socket(HOST, args.port, listen=args.workers == 1,
                       reuse_port=args.workers > 1)
    port = sock.getsockname()[1]
    print(f"ceiling: http://{HOST}:{port}/ ({args.workers} workers)",
          file=sys.stderr, flush=True)
    if args.workers == 1:
        asyncio.run(_serve(sock, args))
        return 0
    children: list[int] = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                sock.close()
                asyncio.run(_serve(bind_socket(HOST, port, listen=True), args))
            finally:
                os._exit(0)
        children.append(pid)

    def stop(signum: int, _frame: object) -> None:
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        try:
            os.waitpid(child, 0)
        except ChildProcessError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
