"""Structured logs: one JSON object per line.

Only what is safe goes in: request id, route template, method, status, duration,
sizes, and explicit `extra` fields chosen by the code (generation names, counts).
Never a body, a query string, a path with data in it, or a normalised identifier;
exceptions are logged as frames and type, never with their message.

The access log (one line per request) is the one hot path: `AccessLog` hands its
fields to the root handler without making a `LogRecord`, and `BatchingJsonHandler`
writes them in batches (on a short timer, at a size threshold, before any other
record and when the app stops), in writes of whole lines small enough for a pipe to
keep them whole, by a thread (`LogSink`): logging never waits on the event loop, and
what a full pipe or disk cannot take is dropped and counted, never a failed or stalled
request. A graceful stop loses nothing the sink can write within `DRAIN_SECONDS`; a
crash (kill -9) loses at most the last `FLUSH_SECONDS` of access lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import select
import stat
import sys
import threading
import time
import traceback
from typing import IO, Any, Final

import orjson

__all__ = ["AccessLog", "BatchingJsonHandler", "JsonFormatter", "LogSink", "configure_logging",
           "dropped_lines", "flush_logs"]

_STANDARD: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)
# A batch is written when its first line is this old or when it has this many lines
# (about 50 KiB), whichever comes first.
FLUSH_SECONDS: Final = 0.1
FLUSH_LINES: Final = 256
# Bytes the kernel writes to a pipe in one piece (POSIX: at least 512; 4096 on Linux).
PIPE_BUF: Final = getattr(select, "PIPE_BUF", 512)
# Batches of log text waiting for the writer thread (each up to FLUSH_LINES lines, about
# 50 KiB): ~3 MiB at most per process, then lines are dropped and counted.
SINK_PIECES: Final = 64
# How long a stopping process waits for its log to be written.
DRAIN_SECONDS: Final = 5.0


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # Frames and the exception's type, never its message: a message may quote
            # what caused it (aiohttp's parser errors quote the raw request line, int()
            # quotes its argument), and that may be an identifier.
            exc_type, _, tb = record.exc_info
            entry["exc"] = "".join(traceback.format_tb(tb)) + exc_type.__qualname__
        return orjson.dumps(entry, default=str).decode()


class _Clock:
    """`ts` of a log line. Its date and time part changes once a second, so it is
    formatted once a second: gmtime and strftime cost as much as the rest of a line."""

    def __init__(self) -> None:
        # One tuple, replaced whole: threads that log at the same time never see the
        # second of one and the text of another.
        self._second: tuple[int, str] = (-1, "")

    def timestamp(self, now: float) -> str:
        second = int(now)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second,
                                     time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{cached[1]}.{int((now - second) * 1000):03d}Z"


_timestamp = _Clock().timestamp


# An access-log line before formatting: when, logger, request id, route, method, status,
# duration in ms.
AccessEntry = tuple[float, str, str, str, str, int, float]


class BatchingJsonHandler(logging.Handler):
    """JSON lines to a text stream, the access log's in batches.

    A LogRecord, a format and a write and flush per request cost more than the rest of
    the request's bookkeeping together. Here an access line waits in memory as a tuple
    (`add_access`); a batch is formatted in one loop (its code and data stay in the
    CPU's caches) and written in one system call, on a short timer or when it is big.
    Every other record is rare and may matter at once (an error before a crash, "index
    loaded" that start-up scripts wait for): it is written immediately, after the lines
    waiting, so the file stays in order.
    """

    def __init__(self, stream: IO[str], *, flush_seconds: float = FLUSH_SECONDS,
                 flush_lines: int = FLUSH_LINES) -> None:
        super().__init__()
        self.stream = stream
        self.flush_seconds = flush_seconds
        self.flush_lines = flush_lines
        self._pending: list[AccessEntry] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        # Guards the batch, which any thread may write out (a record logged from an
        # executor). Handler.handle holds `self.lock` around emit: always taken first,
        # so the two cannot deadlock.
        self._batch_lock = threading.Lock()
        self._sink = LogSink(stream)
        self.setFormatter(JsonFormatter())

    def add_access(self, entry: AccessEntry) -> None:
        """Queue one access line; on the event loop, whose timer writes it soon."""
        with self._batch_lock:
            self._pending.append(entry)
            if len(self._pending) >= self.flush_lines:
                self._write_reporting_errors()
                return
            timer_loop = self._timer_loop
            # A timer of a loop that has since closed never fires (tests run a loop per
            # test): the next line schedules one on the running loop.
            if timer_loop is None or timer_loop.is_closed():
                loop = asyncio.get_running_loop()
                self._timer, self._timer_loop = loop.call_later(self.flush_seconds,
                                                                self._hand_over), loop

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            with self._batch_lock:
                self._write_pending(line)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Everything logged so far handed to the sink, and written if the sink can within
        DRAIN_SECONDS (a log nobody reads must not hold a stopping process for ever).
        For a process that stops: the event loop's timer only hands the batch over."""
        self._hand_over()
        self._sink.drain(DRAIN_SECONDS)

    def _hand_over(self) -> None:
        with self._batch_lock:
            self._write_reporting_errors()

    def _write_reporting_errors(self) -> None:
        # A log that cannot be written (disk full) must not fail the request that logs:
        # reported like Handler.handleError does, on stderr, with no record to show.
        try:
            self._write_pending()
        except Exception:
            if logging.raiseExceptions and sys.stderr is not None:
                traceback.print_exc(file=sys.stderr)

    def _write_pending(self, then: str = "") -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_loop = None
        entries, self._pending = self._pending, []
        text = _access_lines(entries) + then if entries else then
        if text:
            self._sink.put(text)


class LogSink:
    """Where the log's text goes: never a wait on the event loop.

    A write to stderr blocks when it is a pipe that nobody reads (a worker stopped
    answering after 511 requests, /healthz included) and fails when the disk is full
    (requests got 500). For a stream on a file descriptor the text goes into a bounded
    queue that a thread of this process writes out; when the queue is full the text is
    dropped and its lines counted (`dropped_lines`, exposure_log_lines_dropped_total).
    The thread writes whole lines (PIPE_BUF pieces, see `_atomic_pieces`), and cuts
    back the start of a piece that a full disk would have left half written. A stream
    without a descriptor (a test's StringIO) cannot block and is written at once.
    """

    def __init__(self, stream: IO[str], max_pieces: int = SINK_PIECES) -> None:
        self.stream = stream
        self.max_pieces = max_pieces
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None
        self._pid = -1
        self._queue: queue.Queue[bytes] = queue.Queue(max_pieces)

    def put(self, text: str) -> None:
        if self._fd is None:
            for piece in _atomic_pieces(text):
                self.stream.write(piece)
                self.stream.flush()
            return
        if self._pid != os.getpid():  # first use in this process (a forked worker)
            self._start()
        try:
            self._queue.put_nowait(text.encode())
        except queue.Full:
            _count_dropped(text.count("\n"))

    def drain(self, timeout: float) -> bool:
        """Wait until what was put is written, for at most `timeout` s; True if it was."""
        if self._fd is None or self._pid != os.getpid():
            return True
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _start(self) -> None:
        # A thread does not survive fork: each process starts its own writer.
        self._pid = os.getpid()
        self._queue = queue.Queue(self.max_pieces)
        threading.Thread(target=self._write_forever, args=(self._queue,),
                         name="log-writer", daemon=True).start()

    def _write_forever(self, pieces: queue.Queue[bytes]) -> None:
        assert self._fd is not None
        while True:
            data = pieces.get()
            try:
                for piece in _atomic_pieces(data.decode()):
                    self._write_whole(piece.encode())
            finally:
                pieces.task_done()

    def _write_whole(self, data: bytes) -> None:
        """`data` (whole lines) written whole, or not at all and counted as dropped.

        A full disk may take the start of a piece and refuse the rest: the start is then
        cut off the file again (when no other process wrote after it), so the log never
        holds half a line. On a pipe a piece of at most PIPE_BUF bytes goes whole.
        """
        assert self._fd is not None
        start = self._file_size()
        written = 0
        while written < len(data):
            try:
                written += os.write(self._fd, data[written:])
            except OSError:
                if written and start is not None:
                    self._cut_back(start, start + written)
                _count_dropped(data.count(b"\n"))
                return

    def _file_size(self) -> int | None:
        """The size of a regular file behind the descriptor; None for a pipe or a tty."""
        assert self._fd is not None
        try:
            status = os.fstat(self._fd)
        except OSError:
            return None
        return status.st_size if stat.S_ISREG(status.st_mode) else None

    def _cut_back(self, start: int, end: int) -> None:
        assert self._fd is not None
        with contextlib.suppress(OSError):
            if os.fstat(self._fd).st_size == end:  # nobody wrote after our half line
                os.ftruncate(self._fd, start)
                os.lseek(self._fd, start, os.SEEK_SET)


_dropped = 0
_dropped_lock = threading.Lock()


def _count_dropped(lines: int) -> None:
    global _dropped
    with _dropped_lock:
        _dropped += lines


def dropped_lines() -> int:
    """Log lines this process could not write (its sink was full or failing)."""
    return _dropped


def _atomic_pieces(text: str, limit: int = PIPE_BUF) -> list[str]:
    """`text` (whole lines) cut into writes of whole lines of at most `limit` bytes.

    Workers share their stderr. When it is a pipe (a container's log, systemd), the
    kernel keeps a write of up to PIPE_BUF bytes in one piece and may interleave
    larger ones with another worker's: a batch written at once could cut a line of one
    worker with a line of the other. A line longer than `limit` goes alone, as the
    per-record writes of `logging` did.
    """
    if len(text) <= limit and text.isascii():
        return [text] if text else []
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    # "\n" alone ends a line: the others splitlines knows (U+2028...) may sit, raw, in
    # a JSON string. The text ends with "\n", so the last part is empty.
    *lines, rest = text.split("\n")
    for line in (*(f"{line}\n" for line in lines), *([rest] if rest else [])):
        length = len(line) if line.isascii() else len(line.encode())
        if current and size + length > limit:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += length
    if current:
        pieces.append("".join(current))
    return pieces


def _access_lines(entries: list[AccessEntry]) -> str:
    """The JSON lines of `entries`, with the fields in the JsonFormatter's order."""
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    return b"".join(dumps({
        "ts": _timestamp(created), "level": "info", "logger": logger, "msg": "request",
        "request_id": request_id, "route": route, "method": method, "status": status,
        "duration_ms": duration_ms,
    }, option=newline) for created, logger, request_id, route, method, status, duration_ms
        in entries).decode()


class AccessLog:
    """The access log: "request" lines of `logger`, as `logger.info(...)` would write them.

    When the root handler is the one `configure_logging` installed, the line goes
    straight into its batch, without a LogRecord; with any other logging set-up (a
    test's capture handler next to it, say) it goes through `logging`.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._name = logger.name

    def request(self, request_id: str, route: str, method: str, status: int,
                duration_ms: float) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        handler = _installed
        if handler is not None and logging.root.handlers == [handler] \
                and not logger.handlers and handler.level <= logging.INFO:
            handler.add_access((time.time(), self._name, request_id, route, method, status,
                                duration_ms))
            return
        logger.info("request", extra={
            "request_id": request_id, "route": route, "method": method,
            "status": status, "duration_ms": duration_ms,
        })


_installed: BatchingJsonHandler | None = None


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> None:
    global _installed
    handler = BatchingJsonHandler(stream or sys.stderr)
    root = logging.getLogger()
    if _installed is not None:
        _installed.flush()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _installed = handler
    # aiohttp's own access log would print raw paths: ours replaces it.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def flush_logs() -> None:
    """Write every line still waiting; before a process ends without `logging.shutdown`
    (a forked worker leaves with os._exit) and when an app stops."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    if _installed is not None:
        _installed.flush()
