"""Faults: damaged generations published under a running service, a full disk during a
build, a missing or wrong pepper (or OPRF key) at start, SIGTERM during a bulk request.

Against the real programs (`exposure-serve`, `exposure-index` as subprocesses). Covered
elsewhere and not repeated: a flipped `.fp` byte, a truncated `.meta`, a manifest that
is not JSON, a missing `.bloom` and another pepper's generation, swapped in-process
(tests/test_swap.py); `verify` on every flipped byte, truncated, missing and extra
files (tests/test_index_cli.py); a build killed with SIGKILL mid-way and one that fails
at its last step (tests/test_build.py); a wrong and an absent pepper at start
(tests/test_serve_cli.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import Breach, write_pepper
from live_server import (
    REPO,
    SERVE,
    LiveServer,
    build_private_crafted,
    chunked_http_body,
    clean_env,
    live_server,
    read_until_closed,
)
from service_support import MARIE, NEWCOMER, STRANGER, build_crafted, totals

from indexer.index.generation import CURRENT, current_generation
from indexer.index.manifest import MANIFEST, load_manifest, write_manifest
from indexer.private.keys import write_oprf_key
from service.resources.apikeys import KeyStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

INDEX = [sys.executable, "-m", "indexer.cli"]


def index_cli(*args: str | Path, program: list[str] = INDEX
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*program, *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=clean_env(), cwd=REPO)


def point_current_at(index_dir: Path, name: str) -> None:
    """Publish by hand, as the indexer does: a fresh link renamed over `current`."""
    link = index_dir / ".current-by-hand"
    os.symlink(name, link)
    os.replace(link, index_dir / CURRENT)


def wait_for(server: LiveServer, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        state: dict[str, Any] = server.request("GET", "/readyz").json()
        if predicate(state):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.05)


def found(server: LiveServer, person: dict[str, str]) -> bool:
    answer = server.request("POST", "/v1/check", person)
    assert answer.status == 200, answer.body
    return bool(answer.json()["found"])


# --------------------------------------------------------------------- damaged generations


def _flip(path: Path, position: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if position is None else position] ^= 0x5A
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _largest(generation: Path, suffix: str) -> Path:
    return max((generation / "shards").glob(f"*.{suffix}"), key=lambda p: p.stat().st_size)


def _drop_totals(generation: Path) -> None:
    # Valid JSON, its own checksum right (written by the indexer's writer), but a field
    # the reader needs is gone.
    manifest = load_manifest(generation)
    del manifest["totals"]
    write_manifest(generation, manifest)


def _bad_generation_name(generation: Path) -> None:
    manifest = load_manifest(generation)
    manifest["generation"] = None
    write_manifest(generation, manifest)


def _flip_a_digit_of_the_manifest(generation: Path) -> None:
    path = generation / MANIFEST
    text = path.read_text()
    position = text.index('"fingerprints": ') + len('"fingerprints": ')
    while not text[position].isdigit():
        position += 1
    digit = str((int(text[position]) + 1) % 10)
    path.write_text(text[:position] + digit + text[position + 1:])


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "bloom bit flipped": (lambda g: _flip(_largest(g, "bloom")), "checksum mismatch"),
    "bloom truncated": (lambda g: _truncate(_largest(g, "bloom")), "truncated"),
    "bloom header flipped": (lambda g: _flip(_largest(g, "bloom"), 3), "checksum mismatch"),
    "fingerprints truncated": (lambda g: _truncate(_largest(g, "fp")), "truncated"),
    "manifest truncated": (lambda g: _truncate(g / MANIFEST), "not valid JSON"),
    "manifest digit changed": (_flip_a_digit_of_the_manifest, "manifest"),
    "manifest empty": (lambda g: (g / MANIFEST).write_bytes(b""), "not valid JSON"),
    "manifest without totals": (_drop_totals, "totals"),
    "manifest without a generation name": (_bad_generation_name, "generation"),
    "an unlisted file": (lambda g: (g / "shards" / "009.fp").write_bytes(b"x" * 8),
                         "not part of the generation"),
}


def test_damaged_generations_are_refused_and_the_old_one_keeps_serving(
    tmp_path: Path
) -> None:
    crafted = build_crafted(tmp_path / "served")
    with live_server(crafted.index_dir, crafted.pepper_file, tmp_path / "serve",
                     "--anon-rate", "0", "--index-poll", "0.1") as server:
        good = wait_for(server, lambda s: s["status"] == "ready")["generation"]
        refused = 0
        for name, (damage, reason) in DAMAGE.items():
            scratch = tmp_path / f"scratch-{refused}"
            crafted.publish(extra_row=True, index_dir=scratch)
            generation = (scratch / CURRENT).resolve()
            damage(generation)
            shutil.move(str(generation), str(crafted.index_dir / generation.name))
            point_current_at(crafted.index_dir, generation.name)
            state = wait_for(server, lambda s, g=generation.name: g in (s["detail"] or ""))
            refused += 1
            assert state["status"] == "ready" and state["generation"] == good, name
            assert reason in state["detail"], (name, state["detail"])
            # The old generation answers, and does not know the newcomer.
            assert found(server, MARIE) and not found(server, NEWCOMER), name
            metrics = server.request("GET", "/metrics").body.decode()
            assert f"exposure_index_swap_failures_total {float(refused)}" in metrics, name
            # `exposure-index verify` says the same, with a non-zero exit.
            verify = index_cli("verify", crafted.index_dir)
            assert verify.returncode == 1, (name, verify.stdout, verify.stderr)
        # A link to nothing at all.
        point_current_at(crafted.index_dir, "gen-that-does-not-exist")
        state = wait_for(server, lambda s: "gen-that-does-not-exist" in (s["detail"] or ""))
        assert state["generation"] == good and found(server, MARIE)
        # A sound generation published the usual way is taken, and the refusal cleared.
        crafted.publish(extra_row=True)
        state = wait_for(server, lambda s: s["generation"] != good)
        assert state["detail"] is None and found(server, NEWCOMER)
        log = [json.loads(line) for line in server.log_text().splitlines()
               if line.startswith("{")]
        refusals = [e for e in log if e["msg"] == "index generation refused"]
        assert len(refusals) == len(DAMAGE) + 1
        assert all(e["level"] == "error" and e["reason"] for e in refusals)
        assert not [e for e in log if e["msg"] == "index refresh failed"]


# --------------------------------------------------------------------- disk full


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[None]:
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(path)], capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); "
                    "the RLIMIT_FSIZE variant covers the fault")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


# `exposure-index` under a limit on the size of any file it writes (RLIMIT_FSIZE): a
# write past it fails with EFBIG, as a full disk fails with ENOSPC. The limit is set
# once the program is imported, as a service's would be.
SIZE_LIMITED_INDEX = """
import resource, signal, sys
import indexer.cli
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
sys.exit(indexer.cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("fault", ["tmpfs", "file-size-limit"])
def test_a_full_disk_during_a_build_leaves_the_served_generation(
    breach: Breach, tmp_path: Path, fault: str
) -> None:
    """A small generation is published, then a bigger build runs out of room: it fails
    with a clear message, leaves no partial generation, and the first one stays
    current, verified and served."""
    index_dir = tmp_path / "index"
    pepper = write_pepper(tmp_path / "pepper.key")
    crafted = build_crafted(tmp_path / "crafted")
    with contextlib.ExitStack() as stack:
        program = INDEX
        if fault == "tmpfs":
            stack.enter_context(small_tmpfs(index_dir, "96k"))
            expected = "No space left on device"
        else:
            program = [sys.executable, "-c", SIZE_LIMITED_INDEX.format(limit=24 * 1024)]
            expected = "File too large"
        first = index_cli("build", crafted.sources_toml, "--out", index_dir, "--pepper-file",
                          pepper, "--shards", "2", "--workers", "1")
        assert first.returncode == 0, first.stderr
        before = current_generation(index_dir)
        build = index_cli("build", breach.sources_toml, "--out", index_dir, "--pepper-file",
                          pepper, "--shards", "2", "--workers", "1", program=program)
        assert build.returncode == 1, (build.stdout, build.stderr)
        assert expected in build.stderr and "Traceback" not in build.stderr
        assert current_generation(index_dir) == before
        assert not list(index_dir.glob("gen-*.partial"))
        verify = index_cli("verify", index_dir)
        assert verify.returncode == 0, verify.stderr
        with live_server(index_dir, pepper, tmp_path / "serve", "--anon-rate", "0") as server:
            assert server.request("GET", "/readyz").json()["generation"] == before.name
            assert found(server, MARIE)


# --------------------------------------------------------------------- start-up refusals


def _refused_start(tmp_path: Path, breach: Breach, *args: str,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVE, "--index", str(breach.index_dir), "--keys-db", str(tmp_path / "k.sqlite"),
         "--port", "0", *args], capture_output=True, text=True, timeout=60,
        env=env if env is not None else clean_env(), cwd=REPO)


@pytest.mark.parametrize("case", ["missing file", "too short", "a directory", "empty",
                                  "env names a missing file", "hex of another pepper"])
def test_a_missing_or_wrong_pepper_stops_the_start_clearly(
    breach: Breach, tmp_path: Path, case: str
) -> None:
    pepper = tmp_path / "pepper.key"
    env = None
    if case == "too short":
        write_pepper(pepper, os.urandom(16))
    elif case == "a directory":
        pepper.mkdir()
    elif case == "empty":
        write_pepper(pepper, b"")
    elif case == "hex of another pepper":
        write_pepper(pepper, os.urandom(32).hex().encode() + b"\n")
    args = ["--pepper-file", str(pepper)]
    if case == "env names a missing file":
        args, env = [], clean_env(EXPOSURE_PEPPER_FILE=str(tmp_path / "nowhere.key"))
    result = _refused_start(tmp_path, breach, *args, env=env)
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip()
    assert message.startswith("exposure-serve: ") and "Traceback" not in message
    assert "http://" not in message  # it never started listening
    expected = {"hex of another pepper": "another pepper", "too short": "at least 32",
                "empty": "at least 32"}.get(case, "cannot read the pepper file")
    assert expected in message, message
    assert breach.pepper_file.read_bytes().hex() not in message


@pytest.mark.parametrize("case", ["missing", "not a key", "another key"])
def test_a_missing_or_wrong_oprf_key_stops_the_start_clearly(tmp_path: Path, case: str) -> None:
    built = build_private_crafted(tmp_path / "breach")
    key_file = tmp_path / "oprf.key"
    if case == "not a key":
        key_file.write_bytes(b"not a key\n")
        key_file.chmod(0o600)
    elif case == "another key":
        write_oprf_key(key_file)
    result = subprocess.run(
        [*SERVE, "--index", str(built.crafted.index_dir), "--pepper-file",
         str(built.crafted.pepper_file), "--keys-db", str(tmp_path / "k.sqlite"), "--port", "0",
         "--oprf-key-file", str(key_file)], capture_output=True, text=True, timeout=60,
        env=clean_env(), cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("exposure-serve: ") and "Traceback" not in result.stderr
    assert "OPRF key" in result.stderr
    assert built.oprf_key.hex() not in result.stderr


# --------------------------------------------------------------------- SIGTERM drain


def _start_batch(server: LiveServer, token: str) -> socket.socket:
    sock = server.connect(timeout=30)
    sock.sendall(b"POST /v1/check/batch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Type: application/x-ndjson\r\nAuthorization: Bearer "
                 + token.encode() + b"\r\n\r\n")
    return sock


def _lines(count: int, start: int = 0) -> bytes:
    body = b"".join(orjson.dumps({"ref": start + i, **(MARIE if i % 2 else STRANGER)}) + b"\n"
                    for i in range(count))
    return b"%x\r\n" % len(body) + body + b"\r\n"


def _refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return read_until_closed(sock, 2) == b""
    except OSError:
        return True


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_a_bulk_request_in_flight(tmp_path: Path, workers: int) -> None:
    crafted = build_crafted(tmp_path / "breach")
    keys_db = tmp_path / "keys.sqlite"
    store = KeyStore(keys_db)
    token = store.create("Draining insurer")[1]
    store.close()
    with live_server(crafted.index_dir, crafted.pepper_file, tmp_path / "serve",
                     "--anon-rate", "0", "--keys-db", str(keys_db),
                     "--workers", str(workers)) as server:
        sock = _start_batch(server, token)
        sock.sendall(_lines(500))
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")  # the answer has started
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert _refuses_connections(server.port)  # no new work once draining
        sock.sendall(_lines(500, start=500))
        sock.sendall(b"0\r\n\r\n")
        finished = time.monotonic()
        answer += read_until_closed(sock, 30)
        sock.close()
        assert server.process.wait(timeout=40) == 0
        assert time.monotonic() - finished < 30  # within the shutdown timeout
    *lines, summary = [orjson.loads(line) for line in chunked_http_body(answer).split(b"\n")
                       if line]
    assert [line["ref"] for line in lines] == list(range(1000))
    assert totals(summary) == {"lines": 1000, "found": 500, "errors": 0}


def test_sigterm_does_not_wait_for_a_stalled_bulk_client(tmp_path: Path) -> None:
    """A bulk client that stops sending is cut after the body timeout, so it cannot hold
    a shutdown for the whole shutdown timeout (30 s)."""
    crafted = build_crafted(tmp_path / "breach")
    keys_db = tmp_path / "keys.sqlite"
    store = KeyStore(keys_db)
    token = store.create("Stalled insurer")[1]
    store.close()
    with live_server(crafted.index_dir, crafted.pepper_file, tmp_path / "serve",
                     "--anon-rate", "0", "--keys-db", str(keys_db),
                     "--body-timeout", "2") as server:
        sock = _start_batch(server, token)
        sock.sendall(_lines(10))
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        server.process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        answer += read_until_closed(sock, 30)
        sock.close()
        assert server.process.wait(timeout=40) == 0
        assert time.monotonic() - stopped < 20
    assert b'"body_timeout"' in answer and b'"summary"' in answer
