"""An open-loop load generator: POST bodies at a fixed rate, latency from the schedule.

wrk (a closed loop) measures the peak; latency at a given load needs an open loop
(wrk2 is not in Debian): request i is *due* at start + i / rate whatever happened
before it, and its latency runs from that due time to the last byte of the answer.
When every connection is busy the request waits in a queue and that wait counts, so
a stall of the server shows in the percentiles instead of slowing the load down
(no coordinated omission).

Raw asyncio protocols over keep-alive HTTP/1.1 connections, no client library: the
generator costs ~15 µs a request, which is why it runs in its own process. Its own
scheduling delay is included in the latencies it reports (a pessimistic bias) and
reported on its own as `late_ms_p99`; `queued_ms_p99` adds the wait for a free
connection (all of them busy: the server is behind).

    python bench/openloop.py --port P --rate 3000 --seconds 10 --bodies bodies.ndjson

Prints one JSON object. 127.0.0.1 only; bounded by --warmup + --seconds plus a 5 s
grace.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import sys
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_STATUS = re.compile(rb"HTTP/1\.1 (\d{3})")


class Connection(asyncio.Protocol):
    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.due = 0.0
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: bytes, due: float) -> None:
        assert self.transport is not None
        self.busy, self.due = True, due
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        length = _LENGTH.search(self.buffer, 0, head_end + 2)
        total = head_end + 4 + (int(length.group(1)) if length else 0)
        if len(self.buffer) < total:
            return
        status = _STATUS.match(self.buffer)
        code = int(status.group(1)) if status else 0
        del self.buffer[:total]
        self.busy = False
        self.generator.completed(self, code, self.due)

    def connection_lost(self, exc: Exception | None) -> None:
        self.generator.lost(self)


class Generator:
    def __init__(self, requests: list[bytes], rate: float, seconds: float,
                 warmup: float = 0.0) -> None:
        self.requests, self.rate, self.seconds, self.warmup = requests, rate, seconds, warmup
        self.counted_from = float("inf")
        self.loop = asyncio.get_running_loop()
        self.idle: collections.deque[Connection] = collections.deque()
        self.queue: collections.deque[tuple[int, float]] = collections.deque()
        self.latencies: list[float] = []
        self.timeline: list[float] = []  # due time of each answered request
        self.lateness: list[float] = []  # the generator's own delay in issuing a request
        self.waits: list[float] = []  # ... plus the wait for a free connection
        self.statuses: collections.Counter[int] = collections.Counter()
        self.sent = self.lost_connections = 0
        self.finished = asyncio.Event()
        self.outstanding = 0
        self.scheduling = True

    def dispatch(self) -> None:
        now = self.loop.time()
        while self.queue and self.idle:
            i, due = self.queue.popleft()
            self.waits.append(now - due)
            self.idle.popleft().send(self.requests[i % len(self.requests)], due)

    def completed(self, connection: Connection, status: int, due: float) -> None:
        if due >= self.counted_from:
            self.latencies.append(self.loop.time() - due)
            self.timeline.append(due)
            self.statuses[status] += 1
        self.outstanding -= 1
        self.idle.append(connection)
        self.dispatch()
        if not self.scheduling and not self.outstanding:
            self.finished.set()

    def lost(self, connection: Connection) -> None:
        if connection.busy:
            self.lost_connections += 1
            self.outstanding -= 1
        with_connection = [c for c in self.idle if c is not connection]
        self.idle = collections.deque(with_connection)

    async def run(self, port: int, connections: int) -> dict[str, Any]:
        for _ in range(connections):
            _, protocol = await self.loop.create_connection(lambda: Connection(self), HOST, port)
            self.idle.append(protocol)
        # The first `warmup` seconds run at the same rate but are not counted.
        start = self.loop.time()
        self.start = self.counted_from = start + self.warmup
        total = int(self.rate * (self.warmup + self.seconds))
        for i in range(total):
            due = start + i / self.rate
            delay = due - self.loop.time()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            self.lateness.append(self.loop.time() - due)
            self.queue.append((i, due))
            self.outstanding += 1
            self.sent += 1
            self.dispatch()
        self.scheduling = False
        if self.outstanding:
            try:
                await asyncio.wait_for(self.finished.wait(), 5.0)
            except TimeoutError:
                pass
        return self.report(self.loop.time() - self.start)

    def slow_seconds(self, threshold: float = 0.010) -> list[list[float]]:
        """[second of the run, slow answers in it, worst ms] where answers took > 10 ms:
        tells a few long stalls (GC, a preempted worker) from a uniformly slow server."""
        seconds: dict[int, list[float]] = {}
        for due, latency in zip(self.timeline, self.latencies, strict=True):
            if latency > threshold:
                seconds.setdefault(int(due - self.start), []).append(latency)
        return [[second, len(v), round(max(v) * 1000, 1)] for second, v in sorted(seconds.items())]

    def report(self, elapsed: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def pct(values: list[float], q: float) -> float:
            if not values:
                return 0.0
            return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 3)

        lateness = sorted(self.lateness)
        return {
            "offered_rps": self.rate, "seconds": round(elapsed, 2),
            "warmup_seconds": self.warmup, "sent": self.sent, "completed": len(ordered),
            "achieved_rps": round(len(ordered) / elapsed, 1),
            "unanswered": self.outstanding, "lost_connections": self.lost_connections,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "p50_ms": pct(ordered, 0.50), "p90_ms": pct(ordered, 0.90),
            "p99_ms": pct(ordered, 0.99), "p999_ms": pct(ordered, 0.999),
            "max_ms": round(ordered[-1] * 1000, 3) if ordered else 0.0,
            "late_ms_p99": pct(lateness, 0.99),
            "slow_seconds": self.slow_seconds(),
            "queued_ms_p99": pct(sorted(self.waits), 0.99),
        }


def requests_from(bodies: Path, path: str, port: int) -> list[bytes]:
    out = []
    for body in bodies.read_bytes().splitlines():
        if body.strip():
            out.append(
                f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                .encode() + body
            )
    return out


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    generator = Generator(requests_from(args.bodies, args.path, args.port), args.rate,
                          args.seconds, args.warmup)
    return await asyncio.wait_for(generator.run(args.port, args.connections),
                                  args.warmup + args.seconds + 15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds at the same rate before measuring (default 2)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--bodies", type=Path, required=True, help="one JSON body per line")
    parser.add_argument("--path", default="/v1/check")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_main(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
