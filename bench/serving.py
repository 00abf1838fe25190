"""Servers for the benchmark: `exposure-serve` or the ceiling, on 127.0.0.1 only.

A `Server` is started as a subprocess on a port the kernel picks; the time from
`Popen` to "every worker has loaded its index and /readyz answers 200" is recorded
(the service logs "index loaded" once per worker). Memory is read from /proc with
the helpers of bench/build_bench.py: RSS and PSS of each process (PSS splits the
pages that workers share, the memory-mapped index above all, between them).
Every wait is bounded; the server is stopped with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from build_bench import _memory_kib, _tree

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_SECONDS = 120.0


@dataclass
class Server:
    kind: str  # "service" or "ceiling"
    workers: int
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0
    ready_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def worker_pids(self) -> list[int]:
        """The processes that serve: the parent with one worker, else its children."""
        tree = _tree(self.process.pid)
        return tree if self.workers == 1 else tree[1:]

    def memory_mib(self) -> list[dict[str, float]]:
        """RSS and PSS of each worker, in MiB."""
        figures = []
        for pid in self.worker_pids():
            rss, pss = _memory_kib(pid)
            figures.append({"pid": pid, "rss_mib": round(rss / 1024, 1),
                            "pss_mib": round(pss / 1024, 1)})
        return figures

    def pin(self, cpus: set[int]) -> None:
        """Run every process of the server on `cpus` only."""
        for pid in _tree(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(pid, cpus)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def status(self, path: str, timeout: float = 5.0) -> int:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            connection.request("GET", path, headers={"Connection": "close"})
            return connection.getresponse().status
        finally:
            connection.close()


def service_command(index_dir: Path, pepper: Path, keys_db: Path, workers: int,
                    log_level: str = "WARNING") -> list[str]:
    # The access log is per request; WARNING keeps the benchmark about the service and
    # not about a terminal. bench/run.py measures the INFO cost separately.
    return [sys.executable, "-m", "service.cli", "--index", str(index_dir),
            "--pepper-file", str(pepper), "--keys-db", str(keys_db), "--host", HOST,
            "--port", "0", "--workers", str(workers), "--anon-rate", "0",
            "--log-level", log_level]


def ceiling_command(workers: int, lookup: tuple[Path, Path] | None = None,
                    variant: str = "trivial") -> list[str]:
    """The ceiling (or its `variant`); with `lookup` = (index, pepper), the limit
    (bench/ceiling.py)."""
    command = [sys.executable, str(ROOT / "bench" / "ceiling.py"), "--port", "0",
               "--workers", str(workers)]
    if lookup is not None:
        return [*command, "--variant", "lookup", "--index", str(lookup[0]),
                "--pepper-file", str(lookup[1])]
    return [*command, "--variant", variant]


def _wait_ready(server: Server, deadline: float, loaded_lines: int) -> None:
    pattern = re.compile(r"http://127\.0\.0\.1:(\d+)/")
    while True:
        if server.process.poll() is not None:
            raise SystemExit(f"bench: {server.kind} exited:\n{server.log_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {server.kind} never ready:\n{server.log_text()[-3000:]}")
        text = server.log_text()
        if not server.port and (match := pattern.search(text)):
            server.port = int(match.group(1))
        if server.port and text.count('"index loaded"') >= loaded_lines:
            with contextlib.suppress(OSError):
                if server.status("/readyz") == 200:
                    return
        time.sleep(0.02)


@contextlib.contextmanager
def running(kind: str, command: Sequence[str], workers: int, workdir: Path,
            log_level: str = "WARNING") -> Iterator[Server]:
    """A server from `command`, ready; stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{kind}-{workers}w.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPOSURE_")}
    with log.open("wb") as stderr:
        started = time.monotonic()
        process = subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=stderr,
                                   env=env, cwd=ROOT)
    server = Server(kind, workers, process, log)
    try:
        # "index loaded" is logged at INFO: at a quieter level only /readyz is waited for.
        loaded = workers if kind == "service" and log_level.upper() in ("INFO", "DEBUG") else 0
        _wait_ready(server, started + START_SECONDS, loaded)
        server.ready_s = round(time.monotonic() - started, 3)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], timeout: float = 40) -> None:
    """SIGTERM (a graceful drain), then after `timeout` SIGKILL to the whole tree."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in reversed(_tree(process.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
