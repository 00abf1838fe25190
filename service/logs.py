"""Structured logs: one JSON object per line.

Only what is safe goes in: request id, route template, method, status, duration,
sizes, and explicit `extra` fields chosen by the code (generation names, counts).
Never a body, a query string, a path with data in it, or a normalised identifier;
exceptions are logged as frames and type, never with their message.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from typing import IO, Any, Final

import orjson

__all__ = ["JsonFormatter", "configure_logging"]

_STANDARD: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
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


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log would print raw paths: ours replaces it.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
