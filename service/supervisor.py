"""The worker processes of `exposure-serve`: sockets, the worker loop, the supervisor.

With --workers N the parent reserves the port and forks N workers, each listening on
its own socket bound to it (SO_REUSEPORT: the kernel spreads connections evenly); they
share the memory-mapped index through the page cache. The parent restarts a worker
that dies and passes SIGTERM/SIGINT on for a graceful drain; SIGHUP is ignored; a worker
whose supervisor dies stops too; a second server on a port in use refuses to start
(docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import gc
import logging
import os
import signal
import socket
import time

from aiohttp import web

from service.app import create_app
from service.protocol import ServiceRunner
from service.resources.logs import flush_logs
from service.settings import Settings
from service.state import INFLIGHT

SHUTDOWN_TIMEOUT = 30.0  # the longest a stop waits for requests in flight
CLOSE_TIMEOUT = 5.0  # then, for aiohttp to close the connections left
BACKLOG = 2048
# After answering a request early (413, 408), aiohttp reads and drops what is left of
# its body for this long, so that the client gets to read the answer; capped by the
# body timeout, so that a stalled client is not held longer than that.
LINGERING_SECONDS = 10.0
log = logging.getLogger("exposure.serve")


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


class PortInUse(Exception):
    """The port is taken (by another exposure-serve, or any program): said in one line."""


# The sockets that keep a port ours: bound (never closed) for as long as the process and
# its workers live; the kernel releases the name when the last of them exits.
_PORT_LOCKS: list[socket.socket] = []


def reserve_port(host: str, port: int, *, workers: int) -> socket.socket:
    """The socket that holds (host, port) for this server, refusing a port in use.

    With SO_REUSEPORT (several workers) the kernel lets any process of the same user
    bind the same port, and a second server would split the traffic with the first: a
    Unix socket in the abstract namespace, `exposure-serve-PORT`, says who serves it. It
    is no file (nothing in /tmp, nothing left behind), and it belongs to the network
    namespace, as the port does. Taken after the bind, as --port 0 is known only then,
    and before any socket listens.
    """
    try:
        sock = bind_socket(host, port, listen=workers == 1, reuse_port=workers > 1)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"port {port} on {host} is already in use: stop what serves it, "
                            "or choose another --port") from None
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = sock.getsockname()[1]
    if not _lock_port(bound):
        sock.close()
        raise PortInUse(f"port {bound} is already served by another exposure-serve: stop "
                        "it, or choose another --port")
    return sock


def _lock_port(port: int) -> bool:
    """True once this process holds the port's name; False if another server does."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(f"\0exposure-serve-{port}")
    except OSError:
        lock.close()
        return False
    _PORT_LOCKS.append(lock)
    return True


def _die_with(parent: int) -> None:
    """A worker whose supervisor dies (SIGKILL, a crash) gets SIGTERM and drains,
    rather than serve on unsupervised (Linux's PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it died before the call above
        os._exit(0)


_PR_SET_PDEATHSIG = 1


def run_worker(settings: Settings, sock: socket.socket) -> None:
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
    # SIGHUP (a closed terminal, a habit of `kill -HUP`) is ignored: the service picks
    # up new generations and keys by itself; settings change with a restart.
    loop.add_signal_handler(signal.SIGHUP, _hangup_ignored)
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


def _hangup_ignored() -> None:
    log.info("SIGHUP ignored: new generations and keys are picked up without it; "
             "restart to change settings")


def supervise(settings: Settings, sock: socket.socket, address: tuple[str, int],
               workers: int) -> int:
    """Fork `workers` workers, each listening on its own socket bound to `address`
    (`sock`, bound there and never listening, holds the port meanwhile); restart one
    that dies; pass SIGTERM and SIGINT on."""
    children: dict[int, int] = {}
    stopping = False

    supervisor = os.getpid()

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:  # child
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until its loop says so
            _die_with(supervisor)
            code = 0
            try:
                sock.close()  # the parent's: it only holds the port
                run_worker(settings, bind_socket(*address, listen=True))
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
    signal.signal(signal.SIGHUP, lambda _signum, _frame: _hangup_ignored())
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

