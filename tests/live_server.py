"""A real `exposure-serve` process on a free loopback port, and raw HTTP to talk to it.

For the tests that need what an in-process test client cannot give: real sockets
(slow, malformed or abandoned connections), signals (SIGTERM drain), the server's own
memory (RSS from /proc) and its stderr log. Only 127.0.0.1 is ever contacted. Every
wait is bounded; a server that does not come up fails the test with its log.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from service_support import Crafted, build_crafted

REPO = Path(__file__).resolve().parent.parent
SERVE = [sys.executable, "-m", "service.cli"]
HOST = "127.0.0.1"
START_SECONDS = 60.0


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the variables that would choose a pepper or key store."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("EXPOSURE_PEPPER_FILE", "EXPOSURE_KEYS_DB", "EXPOSURE_OPRF_KEY_FILE")}
    return {**env, **extra}


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def request(self, method: str, path: str, body: bytes | dict[str, Any] | None = None,
                headers: Mapping[str, str] | None = None, timeout: float = 30.0) -> Answer:
        """One request on a fresh connection (closed after the answer)."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            all_headers = {"Connection": "close", **(headers or {})}
            data: bytes | None
            if isinstance(body, dict):
                data = orjson.dumps(body)
                all_headers.setdefault("Content-Type", "application/json")
            else:
                data = body
            connection.request(method, path, body=data, headers=all_headers)
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()

    def connect(self, timeout: float = 30.0) -> socket.socket:
        sock = socket.create_connection((HOST, self.port), timeout=timeout)
        return sock

    def raw(self, data: bytes, timeout: float = 10.0) -> bytes:
        """Send bytes no client library would send; everything read until close or timeout."""
        with self.connect(timeout) as sock:
            sock.sendall(data)
            return read_until_closed(sock, timeout)

    def pids(self) -> list[int]:
        """The server process and its workers (with --workers N)."""
        pids = [self.process.pid]
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            pids += [int(pid) for pid in children.read_text().split()]
        return pids

    def rss(self) -> int:
        """Resident memory of the server and its workers, in bytes."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def open_fds(self) -> int:
        return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in self.pids())

    def healthy(self) -> bool:
        try:
            return self.request("GET", "/healthz", timeout=10).status == 200
        except OSError:
            return False

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the peer sends until it closes, or until `timeout` seconds of silence."""
    sock.settimeout(timeout)
    chunks: list[bytes] = []
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def chunked_http_body(response: bytes) -> bytes:
    """The body of a raw HTTP/1.1 answer, chunked transfer decoded."""
    head, _, rest = response.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return rest
    body = bytearray()
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        body += rest[:size]
        rest = rest[size + 2:]
    return bytes(body)


@contextlib.contextmanager
def live_server(index_dir: Path, pepper_file: Path, workdir: Path, *args: str,
                env: Mapping[str, str] | None = None, wait_ready: bool = True
                ) -> Iterator[LiveServer]:
    """`exposure-serve` on a free port of 127.0.0.1, its stderr in `workdir/serve.log`."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "serve.log"
    command = [*SERVE, "--index", str(index_dir), "--pepper-file", str(pepper_file),
               "--host", HOST, "--port", "0", *args]
    if "--keys-db" not in args:
        command += ["--keys-db", str(workdir / "keys.sqlite")]
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr,
                                   env=dict(env) if env is not None else clean_env(), cwd=REPO)
    server = LiveServer(process, 0, log)
    try:
        deadline = time.monotonic() + START_SECONDS
        while not server.port:
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", server.log_text())
            if match:
                server.port = int(match.group(1))
                break
            assert process.poll() is None, f"exposure-serve exited:\n{server.log_text()}"
            assert time.monotonic() < deadline, \
                f"exposure-serve never listened:\n{server.log_text()}"
            time.sleep(0.05)
        while wait_ready:
            with contextlib.suppress(OSError):
                if server.request("GET", "/readyz", timeout=5).status == 200:
                    break
            assert process.poll() is None, f"exposure-serve exited:\n{server.log_text()}"
            assert time.monotonic() < deadline, f"exposure-serve never ready:\n{server.log_text()}"
            time.sleep(0.05)
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class PrivateCrafted:
    """The hand-written breach of service_support with a private part and its OPRF key."""

    crafted: Crafted
    oprf_key_file: Path
    oprf_key: bytes


def build_private_crafted(root: Path) -> PrivateCrafted:
    """What `exposure-index build --private` publishes, for the small crafted breach."""
    from indexer.build.private import build_private
    from indexer.index.generation import current_generation
    from indexer.index.manifest import load_manifest, write_manifest
    from indexer.private import oprf

    crafted = build_crafted(root)
    key = oprf.generate_private_key()
    key_file = root / "oprf.key"
    key_file.write_text(key.hex() + "\n", encoding="ascii")
    key_file.chmod(0o600)
    generation = current_generation(crafted.index_dir)
    section = build_private(crafted.sources_toml, generation, key, bucket_bits=2,
                            output_bytes=8, workers=1)
    manifest = load_manifest(generation)
    manifest["private"] = section
    write_manifest(generation, manifest)
    return PrivateCrafted(crafted, key_file, key)
