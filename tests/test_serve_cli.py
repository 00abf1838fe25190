"""`exposure-serve` as an operator runs it: real processes, a real port.

Covers the refusals at start-up (wrong pepper, no pepper, bad flags), the key commands
(`keys create/list/revoke`), a key created and revoked from the command line while
the service runs, `--workers 2` (both workers answer on one port), and the JSON logs
the workers write on stderr (no identifier in them).
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import Breach, write_pepper
from service_support import LAETITIA, MARIE, STRANGER, Crafted, build_crafted

pytestmark = pytest.mark.slow

SERVE = [sys.executable, "-m", "service.cli"]
REPO = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SERVE, *args], capture_output=True, text=True, timeout=120,
                          env=env if env is not None else clean_env(), cwd=cwd or REPO)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("EXPOSURE_PEPPER_FILE", "EXPOSURE_KEYS_DB")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    return build_crafted(tmp_path_factory.mktemp("crafted"))


# --------------------------------------------------------------------- refusals at start-up


def test_wrong_pepper_refuses_to_start(breach: Breach, tmp_path: Path) -> None:
    other = write_pepper(tmp_path / "other.key")
    result = run("--index", str(breach.index_dir), "--pepper-file", str(other),
                 "--keys-db", str(tmp_path / "keys.sqlite"), "--port", "0")
    assert result.returncode == 2
    assert "another pepper" in result.stderr
    assert "pepper file used for the build" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_pepper_refuses_to_start(breach: Breach, tmp_path: Path) -> None:
    result = run("--index", str(breach.index_dir), "--keys-db", str(tmp_path / "k.sqlite"),
                 "--port", "0")
    assert result.returncode == 2
    assert "no pepper" in result.stderr and "--pepper-file" in result.stderr


def test_pepper_from_the_environment_is_used(breach: Breach, tmp_path: Path) -> None:
    other = write_pepper(tmp_path / "other.key")
    result = run("--index", str(breach.index_dir), "--keys-db", str(tmp_path / "k.sqlite"),
                 "--port", "0", env=clean_env(EXPOSURE_PEPPER_FILE=str(other)))
    assert result.returncode == 2
    assert "another pepper" in result.stderr


@pytest.mark.parametrize("flags", [["--workers", "0"], ["--trusted-proxy", "not-a-network"],
                                   ["--anon-rate", "-1"]])
def test_bad_flags_are_refused_clearly(breach: Breach, tmp_path: Path, flags: list[str]) -> None:
    result = run("--index", str(breach.index_dir), "--pepper-file", str(breach.pepper_file),
                 "--keys-db", str(tmp_path / "k.sqlite"), "--port", "0", *flags)
    assert result.returncode == 2
    assert flags[0] in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------- keys commands


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    db = tmp_path / "keys.sqlite"
    created = run("keys", "create", "Mutuelle Exemple", "--rate", "5000", "--keys-db", str(db))
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert re.fullmatch(r"exk_[A-Za-z0-9_-]{43}", token)
    assert "only time the key is shown" in created.stderr
    assert token.encode() not in db.read_bytes()

    # The environment variable names the database when --keys-db is not given.
    second = run("keys", "create", "Autre mutuelle", env=clean_env(EXPOSURE_KEYS_DB=str(db)))
    assert second.returncode == 0

    listed = run("keys", "list", "--keys-db", str(db))
    assert listed.returncode == 0
    assert "Mutuelle Exemple" in listed.stdout and "Autre mutuelle" in listed.stdout
    assert "5,000" in listed.stdout
    assert token not in listed.stdout and second.stdout.strip() not in listed.stdout

    revoked = run("keys", "revoke", "1", "--keys-db", str(db))
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    again = run("keys", "revoke", "1", "--keys-db", str(db))
    assert again.returncode == 1 and "no live key" in again.stderr
    listed = run("keys", "list", "--keys-db", str(db))
    first_line = next(line for line in listed.stdout.splitlines() if "Mutuelle Exemple" in line)
    assert first_line.rstrip().endswith("Z")  # revoked_at is set


def test_keys_default_database_is_var_keys_sqlite(tmp_path: Path) -> None:
    created = run("keys", "create", "Default place", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "var" / "keys.sqlite").is_file()


def test_keys_refuse_bad_input(tmp_path: Path) -> None:
    db = tmp_path / "keys.sqlite"
    assert run("keys", "create", " ", "--keys-db", str(db)).returncode == 2
    assert run("keys", "create", "X", "--rate", "0", "--keys-db", str(db)).returncode == 2
    assert run("keys", "revoke", "abc", "--keys-db", str(db)).returncode == 2


# --------------------------------------------------------------------- a running service


class Server:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, port: int) -> None:
        self.process, self.log, self.port = process, log, port

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            all_headers = {"Connection": "close", **(headers or {})}
            if isinstance(body, dict):
                all_headers.setdefault("Content-Type", "application/json")
            connection.request(method, path, body=data, headers=all_headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


@contextlib.contextmanager
def serving(crafted: Crafted, tmp_path: Path, workers: int) -> Iterator[Server]:
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [*SERVE, "--index", str(crafted.index_dir), "--pepper-file", str(crafted.pepper_file),
             "--keys-db", str(tmp_path / "keys.sqlite"), "--host", "127.0.0.1", "--port", "0",
             "--workers", str(workers), "--anon-rate", "0", "--index-poll", "0.2"],
            stdout=subprocess.DEVNULL, stderr=stderr, env=clean_env(), cwd=REPO,
        )
    try:
        port = 0
        for _ in range(2400):
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", log.read_text(errors="replace"))
            if match:
                port = int(match.group(1))
                break
            assert process.poll() is None, log.read_text(errors="replace")
            time.sleep(0.05)
        assert port, "the server never said where it listens"
        served = Server(process, log, port)
        for _ in range(2400):
            try:
                if served.request("GET", "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def server(crafted: Crafted, tmp_path: Path) -> Iterator[Server]:
    with serving(crafted, tmp_path, workers=2) as running:
        yield running


def test_one_worker_serves_and_stops_cleanly(crafted: Crafted, tmp_path: Path) -> None:
    with serving(crafted, tmp_path, workers=1) as running:
        status, body = running.request("POST", "/v1/check", LAETITIA)
        assert status == 200 and json.loads(body)["found"] is True
        status, body = running.request("GET", "/healthz")
        assert json.loads(body)["worker"] == running.process.pid  # no fork with one worker
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=60) == 0


def test_two_workers_answer_on_one_port(server: Server) -> None:
    def worker_of(_: int) -> int:
        status, body = server.request("GET", "/healthz")
        assert status == 200
        return int(json.loads(body)["worker"])

    seen: set[int] = set()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(50):
            seen |= set(pool.map(worker_of, range(16)))
            if len(seen) == 2:
                break
    assert len(seen) == 2, seen
    assert server.process.pid not in seen
    for pid in seen:
        assert Path(f"/proc/{pid}/status").read_text().count(
            f"PPid:\t{server.process.pid}") == 1
    status, body = server.request("POST", "/v1/check", MARIE)
    assert status == 200 and json.loads(body)["match"] == "strong"


def test_connections_are_spread_over_the_workers(server: Server) -> None:
    """Each worker listens on its own socket (SO_REUSEPORT): the kernel deals new
    connections out evenly. On one shared socket, whichever worker woke first took
    them, and a load test's keep-alive connections could all land on one worker."""
    connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                   for _ in range(48)]
    try:
        for connection in connections:
            connection.connect()  # all open at once: each goes to a worker now
        workers = collections.Counter()
        for connection in connections:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            workers[json.loads(response.read())["worker"]] += 1
    finally:
        for connection in connections:
            connection.close()
    assert len(workers) == 2, workers
    assert min(workers.values()) >= 8, workers  # binomial(48, 1/2): below 8 ~ 1e-6


def test_keys_changed_from_the_command_line_apply_to_every_running_worker(
    server: Server, tmp_path: Path
) -> None:
    db = str(tmp_path / "keys.sqlite")
    token = run("keys", "create", "Live insurer", "--keys-db", db).stdout.strip()
    body = b"".join(json.dumps({"ref": i, **p}).encode() + b"\n"
                    for i, p in enumerate((MARIE, STRANGER, LAETITIA)))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    for _ in range(10):  # fresh connections: both workers get a share
        status, answer = server.request("POST", "/v1/check/batch", body, headers)
        assert status == 200
        assert json.loads(answer.splitlines()[-1]) == {"summary": {
            "lines": 3, "found": 2, "errors": 0, "strong": 2, "weak": 0, "similar": 0}}
    assert run("keys", "revoke", "1", "--keys-db", db).returncode == 0
    for _ in range(10):
        status, _ = server.request("POST", "/v1/check/batch", body, headers)
        assert status == 401


def test_worker_logs_are_json_and_hold_no_identifier(server: Server) -> None:
    for person in (MARIE, LAETITIA, STRANGER, {**MARIE, "nir": "294037512000592"}):
        server.request("POST", "/v1/check", person)
    server.request("GET", f"/v1/check?nir={MARIE['nir']}")
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0
    text = server.log.read_text(encoding="utf-8")
    entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests = [e for e in entries if e.get("msg") == "request"]
    assert len(requests) >= 5
    assert all({"request_id", "route", "status", "duration_ms"} <= set(e) for e in requests)
    for person in (MARIE, LAETITIA, STRANGER):
        for value in person.values():
            assert value not in text and value.upper() not in text
    assert "294037512000592" not in text


@pytest.mark.parametrize("workers", [1, 2])
def test_a_graceful_stop_writes_every_access_line(
    crafted: Crafted, tmp_path: Path, workers: int
) -> None:
    """Access lines wait in memory and are written in batches (service.resources.logs): SIGTERM
    must still leave every one of them in the log, those of the requests answered just
    before it and that of a request that finishes during the drain. A forked worker
    leaves with os._exit, which skips logging's own flush: that path is covered too."""
    with serving(crafted, tmp_path, workers) as running:
        answered = [f"b0b0{i:012x}" for i in range(200)]  # ids of a safe shape
        connections = [http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
                       for _ in range(4)]  # keep-alive connections, spread over the workers
        for i, request_id in enumerate(answered):
            connection = connections[i % len(connections)]
            connection.request("GET", "/healthz", headers={"X-Request-Id": request_id})
            response = connection.getresponse()
            assert response.status == 200
            response.read()
        for connection in connections:
            connection.close()
        # A request whose body is still coming when the stop begins. "100 Continue" says
        # that a worker has parsed its head and is calling the handler.
        late = socket.create_connection(("127.0.0.1", running.port), timeout=30)
        body = json.dumps(STRANGER).encode()
        late.sendall(b"POST /v1/check HTTP/1.1\r\nHost: x\r\nX-Request-Id: f11e-f11e-f11e-f11e\r\n"
                     b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        answer = late.recv(65536)
        assert answer.startswith(b"HTTP/1.1 100 Continue"), answer
        running.process.send_signal(signal.SIGTERM)
        for _ in range(1200):  # until the worker that has it drains (with it in flight)
            if '"msg":"stopping: draining requests in flight","requests":1}' \
                    in running.log.read_text(errors="replace"):
                break
            time.sleep(0.05)
        late.sendall(body)
        while chunk := late.recv(65536):
            answer += chunk
        late.close()
        assert b"\r\n\r\nHTTP/1.1 200 OK\r\n" in answer, answer[:300]
        assert running.process.wait(timeout=60) == 0
    entries = [json.loads(line) for line in running.log.read_text(encoding="utf-8").splitlines()
               if line.startswith("{")]
    logged = collections.Counter(e["request_id"] for e in entries if e["msg"] == "request")
    assert all(logged[request_id] == 1 for request_id in answered), \
        [r for r in answered if logged[r] != 1][:5]
    assert logged["f11e-f11e-f11e-f11e"] == 1


# ------------------------------------------------------- a log that cannot be written (14/5)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start_with_stderr(crafted: Crafted, tmp_path: Path, stderr: Any,
                       port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*SERVE, "--index", str(crafted.index_dir), "--pepper-file", str(crafted.pepper_file),
         "--keys-db", str(tmp_path / "keys.sqlite"), "--host", "127.0.0.1", "--port", str(port),
         "--anon-rate", "0"],
        stdout=subprocess.DEVNULL, stderr=stderr, env=clean_env(), cwd=REPO)


def _hammer(port: int, count: int) -> list[int]:
    """`count` requests over one keep-alive connection (reconnecting if it closes)."""
    statuses: list[int] = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for i in range(count):
            path = "/healthz" if i % 2 else "/v1/sources"
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        connection.close()
    return statuses


def _wait_listening(process: subprocess.Popen[bytes], port: int) -> None:
    for _ in range(1200):
        assert process.poll() is None, "exposure-serve exited"
        with contextlib.suppress(OSError):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    return
            finally:
                connection.close()
        time.sleep(0.05)
    pytest.fail("exposure-serve never became ready")


def test_a_log_pipe_nobody_reads_never_stops_a_worker(crafted: Crafted, tmp_path: Path) -> None:
    # Issue 14 (5): with stderr on a pipe nobody reads, a worker stopped answering
    # entirely after 511 requests, /healthz included.
    port = _free_port()
    process = _start_with_stderr(crafted, tmp_path, subprocess.PIPE, port)
    try:
        _wait_listening(process, port)
        dropped = 0.0
        for _ in range(30):  # until the pipe and the sink's queue are full, and past
            assert set(_hammer(port, 1000)) == {200}
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/metrics")
            metrics = connection.getresponse().read().decode()
            connection.close()
            found = re.search(r"^exposure_log_lines_dropped_total (\S+)$", metrics, re.M)
            assert found
            dropped = float(found.group(1))
            if dropped > 1000:
                break
        assert dropped > 1000, "nothing dropped: was the pipe ever full?"
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0
    for line in err.decode().splitlines():  # what did get out is whole lines
        if line.startswith("{"):
            json.loads(line)


def test_a_full_disk_under_the_log_fails_no_request(crafted: Crafted, tmp_path: Path) -> None:
    # Issue 14 (5): 9 of 3,000 requests got 500 and a line was cut in half.
    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs",
                              str(disk)], capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        port = _free_port()
        with (disk / "serve.log").open("wb") as log:
            process = _start_with_stderr(crafted, tmp_path, log, port)
        try:
            _wait_listening(process, port)
            assert set(_hammer(port, 3000)) == {200}
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        text = (disk / "serve.log").read_text(errors="replace")
        assert len(text) > 30_000  # the disk did fill
        lines = text.split("\n")
        assert lines[-1] == ""  # it ends at the end of a line
        for line in lines[:-1]:
            if line.startswith("{"):
                json.loads(line)  # whole, never cut in half
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


# ------------------------------------------------------------- process model (14/6)


def _pids_answering(port: int, count: int = 20) -> set[int]:
    pids = set()
    for _ in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", "/healthz", headers={"Connection": "close"})
            pids.add(json.loads(connection.getresponse().read())["worker"])
        finally:
            connection.close()
    return pids


@pytest.mark.parametrize("second_workers", [1, 2])
def test_a_second_server_on_a_port_in_use_refuses_in_one_line(
    server: Server, crafted: Crafted, tmp_path: Path, second_workers: int,
) -> None:
    # Issue 14 (6): two `--workers 2` on one port both started and split the traffic; a
    # single-worker second instance died with a raw traceback.
    before = _pids_answering(server.port)
    process = subprocess.Popen(
        [*SERVE, "--index", str(crafted.index_dir), "--pepper-file", str(crafted.pepper_file),
         "--keys-db", str(tmp_path / "other-keys.sqlite"), "--host", "127.0.0.1",
         "--port", str(server.port), "--workers", str(second_workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=clean_env(),
        cwd=REPO, start_new_session=True)
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # it started: its workers too
        process.communicate()
        pytest.fail("a second server started on a port in use")
    assert process.returncode == 2, err
    said = [line for line in err.splitlines() if line.startswith("exposure-serve:")]
    assert "Traceback" not in err
    assert any(f"port {server.port}" in line and "--port" in line for line in said), said
    assert _pids_answering(server.port) <= before  # the first server alone answers


def test_sighup_is_ignored_and_workers_are_never_orphaned(
    crafted: Crafted, tmp_path: Path,
) -> None:
    with serving(crafted, tmp_path, workers=2) as running:
        workers = _pids_answering(running.port)
        running.process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert running.process.poll() is None  # SIGHUP killed the supervisor before
        assert _pids_answering(running.port) <= workers and \
            server_alive(running.port)
        assert "SIGHUP ignored" in running.log.read_text(errors="replace")
        # The supervisor killed outright: its workers stop too, never serve unsupervised.
        children = Path(f"/proc/{running.process.pid}/task/{running.process.pid}/children")
        pids = [int(pid) for pid in children.read_text().split()]
        assert len(pids) == 2
        running.process.kill()
        running.process.wait(timeout=30)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids), "orphaned workers still running"


def server_alive(port: int) -> bool:
    return bool(_pids_answering(port, 1))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"
