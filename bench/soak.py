"""Soak test: the service at 80% of its peak throughput for a long time (10 minutes).

    python bench/soak.py                          # 10 min on a 20,000-record synthetic index
    python bench/soak.py --seconds 30 --json soak.json
    python bench/soak.py --index var/index --pepper-file var/pepper.key \\
                         --members var/demo/members.csv --workers 2

What it does, loopback only (127.0.0.1, a port it picks; never another address):
1. starts `exposure-serve` on an index (built here from a synthetic breach unless
   --index is given) with an API key of its own and no anonymous rate limit;
2. measures the peak: a closed loop of --concurrency connections sending the mix
   below as fast as the service answers, for --peak-seconds (this also warms it up);
3. offers --load (0.8) of that rate for --seconds, open loop: request i is due at
   start + i / rate, whatever the answers before it (a late start is counted);
4. reports: requests, errors (a transport failure, a timeout, or a status other than
   the expected one), the service's resident memory (RSS, all its processes) at the
   start and end of the steady phase and its maximum, latency p50 / p99 / max
   (from sending to the last byte of the answer), and the error lines of its log.

The mix, from the member file of the breach: single checks by NIR and by names,
found and not found (200), some mistyped (422, a correct answer), and every
--batch-every requests one bulk request of --batch-lines lines.

Exit status 1 if there was any error. Bounded: every loop stops at its deadline,
each request times out after --request-timeout seconds, and the service is stopped
(SIGTERM, then SIGKILL) at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import ipaddress
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import serving  # noqa: E402
from build_bench import _memory_kib, _tree  # noqa: E402

from indexer.build.local import BuildOptions, build_index  # noqa: E402
from indexer.build.synth import write_synthetic_breach  # noqa: E402
from service.resources.apikeys import KeyStore  # noqa: E402

HOST = "127.0.0.1"
FIELDS = ("nir", "birth_date", "last_name", "first_name")


# --------------------------------------------------------------------- the mix


@dataclass(frozen=True)
class Call:
    path: str
    body: bytes
    content_type: str
    expected: frozenset[int]
    keyed: bool = False


def load_members(path: Path, limit: int = 5000) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as stream:
        sample = stream.read(4096)
        stream.seek(0)
        delimiter = ";" if sample.count(";") >= sample.count(",") else ","
        rows = []
        for row in csv.DictReader(stream, delimiter=delimiter):
            rows.append({k: v for k, v in row.items() if k in FIELDS and v})
            if len(rows) >= limit:
                break
    if not rows:
        raise SystemExit(f"soak: no members in {path}")
    return rows


def build_mix(members: list[dict[str, str]], batch_every: int, batch_lines: int) -> list[Call]:
    """A fixed cycle of calls; request i sends mix[i % len(mix)]."""
    ok = frozenset({200, 422})  # a member with a mistyped field gets a correct 422
    calls: list[Call] = []
    for i, member in enumerate(members):
        if i % 10 == 9 and "nir" in member:  # a typo in the NIR's key: 422
            nir = member["nir"].replace(" ", "")
            member = {**member, "nir": nir[:-1] + str((int(nir[-1]) + 1) % 10)}
        elif i % 3 == 1:  # by names only
            member = {k: v for k, v in member.items() if k != "nir"}
        calls.append(Call("/v1/check", orjson.dumps(member), "application/json", ok))
        if batch_every and len(calls) % batch_every == batch_every - 1:
            start = (i * batch_lines) % len(members)
            lines = [orjson.dumps({"ref": n, **members[(start + n) % len(members)]})
                     for n in range(batch_lines)]
            calls.append(Call("/v1/check/batch", b"\n".join(lines) + b"\n",
                              "application/x-ndjson", frozenset({200}), keyed=True))
    return calls


# --------------------------------------------------------------------- the service


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    port: int
    log_lines: int = 0
    error_lines: list[str] = field(default_factory=list)

    def pids(self) -> list[int]:
        return _tree(self.process.pid)

    def rss(self) -> int:
        """Resident bytes of the server and its workers (the bench's one tree walker)."""
        return sum(_memory_kib(pid)[0] for pid in self.pids()) * 1024


def _drain(stream: IO[bytes], service: Service) -> None:
    """Read the service's log to its end, keeping only the count and the error lines."""
    for raw in stream:
        service.log_lines += 1
        line = raw.decode("utf-8", "replace").rstrip()
        if '"level":"error"' in line or '"level":"critical"' in line or "Traceback" in line:
            if len(service.error_lines) < 20:
                service.error_lines.append(line[:500])


@contextlib.contextmanager
def running_service(args: argparse.Namespace, index_dir: Path, pepper_file: Path,
                    keys_db: Path) -> Iterator[Service]:
    command = serving.service_command(index_dir, pepper_file, keys_db, args.workers,
                                      args.log_level)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPOSURE_")}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=env, cwd=ROOT)
    assert process.stderr is not None
    try:
        deadline = time.monotonic() + 60
        port = 0
        while not port:
            line = process.stderr.readline().decode("utf-8", "replace")
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            if match:
                port = int(match.group(1))
            elif not line and process.poll() is not None:
                raise SystemExit(f"soak: exposure-serve exited with {process.returncode}")
            elif time.monotonic() > deadline:
                raise SystemExit("soak: exposure-serve did not start")
        service = Service(process, port)
        threading.Thread(target=_drain, args=(process.stderr, service), daemon=True).start()
        yield service
    finally:
        serving.stop(process, timeout=60)


async def wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(base + "/readyz") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise SystemExit("soak: the service never became ready")


# --------------------------------------------------------------------- the load


@dataclass
class Tally:
    requests: int = 0
    errors: int = 0
    late: int = 0
    latencies: list[float] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def send(session: aiohttp.ClientSession, base: str, call: Call, token: str,
               tally: Tally, timeout: float) -> None:
    headers = {"Content-Type": call.content_type}
    if call.keyed:
        headers["Authorization"] = f"Bearer {token}"
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            async with session.post(base + call.path, data=call.body,
                                    headers=headers) as response:
                body = await response.read()
        elapsed = time.perf_counter() - started
    except TimeoutError:
        tally.requests += 1
        tally.error("timeout")
        return
    except (aiohttp.ClientError, OSError) as exc:
        tally.requests += 1
        tally.error(type(exc).__name__)
        return
    tally.requests += 1
    tally.latencies.append(elapsed)
    if response.status not in call.expected:
        tally.error(f"status {response.status}")
    elif call.keyed and b'"summary"' not in body[-200:]:
        tally.error("bulk answer without its summary")


async def closed_loop(session: aiohttp.ClientSession, base: str, mix: list[Call], token: str,
                      seconds: float, concurrency: int, timeout: float) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + seconds
    counter = iter(range(10**12))

    async def worker() -> None:
        while time.monotonic() < deadline:
            await send(session, base, mix[next(counter) % len(mix)], token, tally, timeout)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally


async def open_loop(session: aiohttp.ClientSession, base: str, mix: list[Call], token: str,
                    seconds: float, rate: float, concurrency: int, timeout: float,
                    offset: int) -> Tally:
    tally = Tally()
    started = time.monotonic()
    deadline = started + seconds
    counter = iter(range(10**12))

    async def worker() -> None:
        while True:
            i = next(counter)
            due = started + i / rate
            if due >= deadline:
                return
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.1:
                tally.late += 1  # every connection was busy: the service fell behind
            await send(session, base, mix[(offset + i) % len(mix)], token, tally, timeout)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally


async def sample_rss(service: Service, samples: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(service.rss())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    samples.append(service.rss())


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def soak(args: argparse.Namespace, service: Service, mix: list[Call],
               token: str) -> dict[str, Any]:
    base = f"http://{HOST}:{service.port}"
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await wait_ready(session, base)
        peak = await closed_loop(session, base, mix, token, args.peak_seconds,
                                 args.concurrency, args.request_timeout)
        peak_rate = peak.requests / args.peak_seconds
        rate = max(1.0, args.load * peak_rate)
        samples: list[int] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(service, samples, stop))
        steady = await open_loop(session, base, mix, token, args.seconds, rate,
                                 args.concurrency, args.request_timeout, peak.requests)
        stop.set()
        await sampler
    return {
        "seconds": args.seconds,
        "peak_requests_per_second": round(peak_rate, 1),
        "peak_errors": peak.errors,
        "target_requests_per_second": round(rate, 1),
        "achieved_requests_per_second": round(steady.requests / args.seconds, 1),
        "requests": steady.requests,
        "errors": steady.errors + peak.errors,
        "error_kinds": {**peak.error_kinds, **steady.error_kinds},
        "late_starts": steady.late,
        "latency_ms": {
            "p50": round(percentile(steady.latencies, 0.50) * 1000, 3),
            "p99": round(percentile(steady.latencies, 0.99) * 1000, 3),
            "max": round(max(steady.latencies, default=0.0) * 1000, 3),
        },
        "rss_bytes": {"start": samples[0], "end": samples[-1], "max": max(samples)},
        "rss_growth": round((samples[-1] - samples[0]) / samples[0], 4),
        "service_log_lines": service.log_lines,
        "service_error_lines": service.error_lines,
        "workers": args.workers,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


# --------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0,
                        help="length of the steady phase (default 600)")
    parser.add_argument("--peak-seconds", type=float, default=10.0,
                        help="length of the peak measurement (default 10)")
    parser.add_argument("--load", type=float, default=0.8,
                        help="fraction of the peak rate to offer (default 0.8)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="connections (default 32)")
    parser.add_argument("--workers", type=int, default=1, help="service workers (default 1)")
    parser.add_argument("--batch-every", type=int, default=50,
                        help="one bulk request every N requests (0: none; default 50)")
    parser.add_argument("--batch-lines", type=int, default=200,
                        help="lines per bulk request (default 200)")
    parser.add_argument("--request-timeout", type=float, default=10.0,
                        help="a request slower than this is an error (default 10 s)")
    parser.add_argument("--records", type=int, default=20_000,
                        help="synthetic breach size when no --index is given")
    parser.add_argument("--index", type=Path, help="serve this index instead")
    parser.add_argument("--pepper-file", type=Path, help="the pepper of --index")
    parser.add_argument("--members", type=Path, help="member file for the requests")
    parser.add_argument("--log-level", default="INFO", help="the service's (default INFO)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    assert ipaddress.ip_address(HOST).is_loopback  # the only address ever contacted
    if args.seconds <= 0 or args.peak_seconds <= 0 or not 0 < args.load <= 1:
        raise SystemExit("soak: --seconds and --peak-seconds > 0, 0 < --load <= 1")
    with tempfile.TemporaryDirectory(prefix="exposure-soak-") as scratch:
        work = Path(scratch)
        if args.index is None:
            synth = work / "synth"
            write_synthetic_breach(synth, records=args.records, seed=7, workers=1)
            pepper_file = work / "pepper.key"
            pepper_file.write_bytes(os.urandom(32))
            pepper_file.chmod(0o600)
            index_dir = work / "index"
            build_index(synth / "sources.toml", index_dir, pepper_file.read_bytes(),
                        BuildOptions(shards=8, workers=1))
            members_file = args.members or synth / "members.csv"
        else:
            if args.pepper_file is None or args.members is None:
                raise SystemExit("soak: --index needs --pepper-file and --members")
            index_dir, pepper_file, members_file = args.index, args.pepper_file, args.members
        keys_db = work / "keys.sqlite"
        store = KeyStore(keys_db)
        try:
            token = store.create("Soak insurer", 10**9)[1]
        finally:
            store.close()
        mix = build_mix(load_members(members_file), args.batch_every, args.batch_lines)
        with running_service(args, index_dir, pepper_file, keys_db) as service:
            report = asyncio.run(soak(args, service, mix, token))
            time.sleep(0.5)  # let the log drain
            report["service_error_lines"] = service.error_lines
    print(f"peak {report['peak_requests_per_second']:,.0f} req/s; offered "
          f"{report['target_requests_per_second']:,.0f} req/s for {args.seconds:g} s, "
          f"achieved {report['achieved_requests_per_second']:,.0f} req/s")
    print(f"requests {report['requests']:,}  errors {report['errors']} "
          f"{report['error_kinds'] or ''}  late starts {report['late_starts']:,}")
    latency = report["latency_ms"]
    print(f"latency p50 {latency['p50']} ms  p99 {latency['p99']} ms  max {latency['max']} ms")
    rss = report["rss_bytes"]
    print(f"RSS start {rss['start'] / 2**20:.1f} MiB  end {rss['end'] / 2**20:.1f} MiB  "
          f"max {rss['max'] / 2**20:.1f} MiB  (growth {report['rss_growth']:+.2%})")
    print(f"service log: {report['service_log_lines']:,} lines, "
          f"{len(report['service_error_lines'])} error lines; "
          f"load average {report['load_average_1min']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["errors"] or report["service_error_lines"] else 0


if __name__ == "__main__":
    sys.exit(main())
