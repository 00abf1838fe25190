"""`exposure-serve`: run the service, or manage API keys (DESIGN §5, contract).

    exposure-serve [--index DIR] [--host H] [--port P] [--workers N] [--pepper-file F]
                   [--keys-db PATH] [--anon-rate PER_MIN] [--anon-burst N]
                   [--max-batch-bytes N] [--trusted-proxy CIDR ...]
                   [--keepalive-timeout SECONDS] [--body-timeout SECONDS]
    exposure-serve keys create NAME [--rate RECORDS_PER_MIN]
    exposure-serve keys list
    exposure-serve keys revoke ID

With --workers N the parent reserves the port and forks N workers, each listening on
its own socket bound to it (SO_REUSEPORT: the kernel spreads connections evenly over
them); they share the memory-mapped index through the page cache. The parent
restarts a worker that dies and passes SIGTERM/SIGINT on for a graceful drain: each
worker stops accepting, lets its requests in flight finish (a bulk stream included,
up to SHUTDOWN_TIMEOUT seconds), then stops.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from indexer.fingerprint import (
    PEPPER_ENV,
    Fingerprinter,
    PepperError,
    load_pepper,
    resolve_pepper_file,
)
from indexer.generation import IndexNotFound, current_generation
from indexer.reader import IndexError_, IndexReader, KeyMismatch

from . import private
from .apikeys import DEFAULT_KEY_RATE, KeyStore, KeyStoreError
from .app import create_app
from .logs import configure_logging, flush_logs
from .protocol import ServiceRunner
from .settings import Settings
from .state import INFLIGHT

KEYS_DB_ENV = "EXPOSURE_KEYS_DB"
DEFAULT_KEYS_DB = Path("var/keys.sqlite")
SHUTDOWN_TIMEOUT = 30.0  # the longest a stop waits for requests in flight
CLOSE_TIMEOUT = 5.0  # then, for aiohttp to close the connections left
BACKLOG = 2048
# After answering a request early (413, 408), aiohttp reads and drops what is left of
# its body for this long, so that the client gets to read the answer; capped by the
# body timeout, so that a stalled client is not held longer than that.
LINGERING_SECONDS = 10.0
log = logging.getLogger("exposure.serve")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exposure-serve",
        description="Serve the exposure lookup API and web form, or manage API keys "
        "('exposure-serve keys --help').",
    )
    parser.add_argument("--index", type=Path, default=Path("var/index"), metavar="INDEX_DIR",
                        help="index directory; its 'current' link is followed (default var/index)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="worker processes sharing the index (default 1)")
    parser.add_argument("--pepper-file", type=Path, metavar="F",
                        help=f"the build's pepper (default: ${PEPPER_ENV})")
    parser.add_argument("--keys-db", type=Path, metavar="PATH",
                        help=f"API key database (default: ${KEYS_DB_ENV}, else {DEFAULT_KEYS_DB})")
    parser.add_argument("--anon-rate", type=float, default=30.0, metavar="PER_MIN",
                        help="anonymous lookups per minute per address (0 = unlimited; default 30)")
    parser.add_argument("--anon-burst", type=int, default=10, metavar="N",
                        help="anonymous burst (default 10)")
    parser.add_argument("--max-batch-bytes", type=int, default=1 << 30, metavar="N",
                        help="largest bulk body in bytes (default 1 GiB)")
    parser.add_argument("--trusted-proxy", action="append", default=[], metavar="CIDR",
                        help="reverse proxy whose X-Forwarded-For is believed (repeatable)")
    parser.add_argument("--keepalive-timeout", type=float, default=75.0, metavar="SECONDS",
                        help="close an idle connection, or one that has not sent a complete "
                        "request head, after SECONDS (default 75)")
    parser.add_argument("--body-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="answer 408 and close when a body stalls: the whole body of a "
                        "small request, or each wait for more of a bulk body (default 60)")
    parser.add_argument("--index-poll", type=float, default=2.0, metavar="SECONDS",
                        help="how often to look for a newly published generation (default 2)")
    parser.add_argument("--oprf-key-file", type=Path, metavar="F",
                        help="OPRF key for /v1/private/* (default: $EXPOSURE_OPRF_KEY_FILE; "
                        "without one those routes answer 503)")
    parser.add_argument("--log-level", default="INFO", help="log level (default INFO)")

    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--keys-db", type=Path, metavar="PATH", default=argparse.SUPPRESS,
                    help=f"API key database (default: ${KEYS_DB_ENV}, else {DEFAULT_KEYS_DB})")
    keys = commands.add_parser("keys", help="create, list or revoke API keys", parents=[db],
                               description="Manage the API keys of bulk callers.")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key; it is printed once", parents=[db],
                                description="Create an API key for NAME. The key is printed "
                                "once; only its hash is stored.")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--rate", type=int, default=DEFAULT_KEY_RATE, metavar="RECORDS_PER_MIN",
                        help=f"records per minute (default {DEFAULT_KEY_RATE:,})")
    actions.add_parser("list", help="list keys with their usage (never the keys)", parents=[db])
    revoke = actions.add_parser("revoke", help="revoke a key by id; effective at once",
                                parents=[db])
    revoke.add_argument("id", type=int, metavar="ID")
    return parser


def _keys_db(args: argparse.Namespace) -> Path:
    if args.keys_db is not None:
        return Path(args.keys_db)
    return Path(os.environ.get(KEYS_DB_ENV) or DEFAULT_KEYS_DB)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "keys":
            return _keys(args)
        return _serve(args)
    except (PepperError, KeyStoreError, KeyMismatch, ValueError) as exc:
        print(f"exposure-serve: {exc}", file=sys.stderr)
        return 2


def _keys(args: argparse.Namespace) -> int:
    store = KeyStore(_keys_db(args))
    try:
        if args.action == "create":
            key, token = store.create(args.name, args.rate)
            print(token)
            print(f"key {key.id} for {key.name!r}, {key.rate_per_minute:,} records/min. "
                  "This is the only time the key is shown: store it now.", file=sys.stderr)
        elif args.action == "list":
            print(f"{'id':>4}  {'name':<30} {'rate/min':>12} {'requests':>10} {'records':>12}  "
                  "created               revoked")
            for key, requests, records in store.all_keys():
                print(f"{key.id:>4}  {key.name:<30} {key.rate_per_minute:>12,} {requests:>10,} "
                      f"{records:>12,}  {key.created_at}  {key.revoked_at or '-'}")
        else:
            if not store.revoke(args.id):
                print(f"exposure-serve: no live key with id {args.id}", file=sys.stderr)
                return 1
            print(f"key {args.id} revoked")
    finally:
        store.close()
    return 0


def settings_from_args(args: argparse.Namespace) -> Settings:
    if args.anon_rate < 0 or args.anon_burst < 1:
        raise ValueError("--anon-rate must be >= 0 and --anon-burst >= 1")
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    if args.keepalive_timeout <= 0 or args.body_timeout <= 0:
        raise ValueError("--keepalive-timeout and --body-timeout must be positive")
    try:
        proxies = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in args.trusted_proxy)
    except ValueError as exc:
        raise ValueError(f"--trusted-proxy: {exc}") from None
    return Settings(
        index_dir=args.index, pepper_file=args.pepper_file, keys_db=_keys_db(args),
        anon_rate=args.anon_rate, anon_burst=args.anon_burst, trusted_proxies=proxies,
        max_batch_bytes=args.max_batch_bytes, index_poll_seconds=args.index_poll,
        keepalive_timeout=args.keepalive_timeout, body_timeout=args.body_timeout,
        oprf_key_file=args.oprf_key_file,
    )


def _precheck(settings: Settings) -> None:
    """Refuse to start with a clear message rather than answer "not found" to everyone."""
    fingerprinter = Fingerprinter(load_pepper(resolve_pepper_file(settings.pepper_file)))
    try:
        IndexReader(current_generation(settings.index_dir), fingerprinter, verify=False)
    except (IndexNotFound, IndexError_) as exc:
        if isinstance(exc, KeyMismatch):
            raise
        print(f"exposure-serve: warning: {exc}; not ready until an index is published",
              file=sys.stderr)
    KeyStore(settings.keys_db).close()
    private.precheck(settings)


def _serve(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    settings = settings_from_args(args)
    _precheck(settings)
    # One worker listens on the socket bound here. With several, this socket only holds
    # the port (bound, never listening): each worker listens on its own socket bound to
    # the same port (SO_REUSEPORT), and the kernel spreads new connections evenly over
    # them. On one shared listening socket, whichever worker woke first took the
    # connection: all 64 keep-alive connections of a load test could land on one of
    # two workers (measured), leaving the other core idle.
    sock = bind_socket(args.host, args.port, listen=args.workers == 1,
                       reuse_port=args.workers > 1)
    port = sock.getsockname()[1]
    print(f"exposure-serve: http://{args.host}:{port}/ "
          f"({args.workers} worker{'s' if args.workers > 1 else ''}, index {settings.index_dir})",
          file=sys.stderr, flush=True)
    if args.workers == 1:
        _run_worker(settings, sock)
        return 0
    return _supervise(settings, sock, (args.host, port), args.workers)


def bind_socket(host: str, port: int, *, listen: bool, reuse_port: bool = True
                ) -> socket.socket:
    """A TCP socket bound to (host, port), shared with the other workers' when
    `reuse_port` (SO_REUSEPORT); listening with the service's backlog when `listen`."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(BACKLOG)
    return sock


def _run_worker(settings: Settings, sock: socket.socket) -> None:
    try:
        asyncio.run(_serve_until_stopped(settings, sock))
    finally:
        # A forked worker leaves with os._exit, which skips logging's own flush at exit:
        # the access lines still buffered would be lost.
        flush_logs()


async def _serve_until_stopped(settings: Settings, sock: socket.socket) -> None:
    """Serve on `sock` until SIGTERM or SIGINT, then drain and stop.

    The drain is ours rather than aiohttp's: aiohttp's shutdown stops reading every
    connection at once, so a bulk body still streaming in would never end. Here the
    listening socket is closed first (new connections go to other workers or are
    refused), the requests in flight get up to SHUTDOWN_TIMEOUT seconds to finish
    with their bodies still flowing (each answer closes its connection), and only
    then do aiohttp's shutdown and the cleanup contexts run.
    """
    # Signals first: a SIGTERM during start-up (the index loading, say) then stops the
    # worker through the drain below instead of killing it with a request half-answered.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    app = create_app(settings)
    runner = ServiceRunner(
        app, handle_signals=False, access_log=None,
        keepalive_timeout=settings.keepalive_timeout,
        lingering_time=min(LINGERING_SECONDS, settings.body_timeout),
        shutdown_timeout=CLOSE_TIMEOUT,
    )
    await runner.setup()
    try:
        # Everything loaded so far (modules, the app, the index's metadata) lives as long
        # as the worker: move it out of the collector's sight, so full collections stay
        # short (they were the 13-20 ms pauses behind the p99 at 80% of peak). Before
        # the site starts: the full collection here takes tens of ms, and no request
        # should wait for it.
        gc.collect()
        gc.freeze()
        site = web.SockSite(runner, sock, backlog=BACKLOG)
        await site.start()
        await stop.wait()
        await site.stop()
        inflight = app[INFLIGHT]
        log.info("stopping: draining requests in flight", extra={"requests": inflight.count})
        if not await inflight.drain(SHUTDOWN_TIMEOUT):
            log.warning("stopping: requests still in flight after the shutdown timeout",
                        extra={"requests": inflight.count})
    finally:
        await runner.cleanup()


def _supervise(settings: Settings, sock: socket.socket, address: tuple[str, int],
               workers: int) -> int:
    """Fork `workers` workers, each listening on its own socket bound to `address`
    (`sock`, bound there and never listening, holds the port meanwhile); restart one
    that dies; pass SIGTERM and SIGINT on."""
    children: dict[int, int] = {}
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:  # child
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                sock.close()  # the parent's: it only holds the port
                _run_worker(settings, bind_socket(*address, listen=True))
            except BaseException:  # noqa: BLE001 - report and exit the child
                logging.getLogger("exposure.serve").exception("worker crashed")
                code = 1
            os._exit(code)
        children[pid] = slot

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        # The workers drain what they have; the port is free once they are gone.
        sock.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(workers):
        spawn(slot)
    restarts: list[float] = []
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        slot = children.pop(pid, -1)
        if slot < 0 or stopping:
            continue
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < 60] + [now]
        if len(restarts) > 10:
            log.error("workers keep dying: giving up")
            stop(signal.SIGTERM, None)
            continue
        log.warning("worker died; restarting", extra={"slot": slot, "status": status})
        spawn(slot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
