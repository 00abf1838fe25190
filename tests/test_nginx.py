"""The load balancer for real: Debian's nginx with deploy/nginx/exposure.conf.template,
rendered to a temp dir, in front of two `exposure-serve` processes on loopback.

Proves: TLS termination and the plain-HTTP redirect; requests spread over both
backends (counted by each backend's own /metrics); X-Forwarded-For believed only from
the trusted front (per-address rate-limit buckets) and ignored by a backend that trusts
no proxy; the bulk route streamed end to end by exposure-client; nginx's own per-address
limit; and, last, one backend killed with SIGKILL while requests flow: not one is lost.
"""

from __future__ import annotations

import csv
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from conftest import Breach, agrees_with_ground_truth
from test_client import Served, create_key, metric, start_serve

from client.bulk import main as client_main

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "deploy" / "nginx" / "exposure.conf.template"
REQUEST_TIMEOUT = 10.0
_PLACEHOLDER = re.compile(r"\$\{(EXPOSURE_[A-Z0-9_]+)\}")


def _nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


NGINX = _nginx_binary()
if NGINX is None:
    if os.environ.get("CI"):
        pytest.fail("nginx is missing in CI: .ci/run installs nginx-light", pytrace=False)
    pytestmark = pytest.mark.skip(reason="nginx is not installed (apt-get install nginx-light); "
                                  "CI installs it and runs this test")


def render_template(values: dict[str, str]) -> str:
    """envsubst, as the nginx image does it: ${EXPOSURE_*} only, every one must be set."""
    text = TEMPLATE.read_text(encoding="utf-8")
    missing = set(_PLACEHOLDER.findall(text)) - values.keys()
    assert not missing, f"placeholders without a value: {sorted(missing)}"
    return _PLACEHOLDER.sub(lambda found: values[found.group(1)], text)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


@dataclass
class Stack:
    nginx: subprocess.Popen[bytes]
    workdir: Path
    https_port: int
    http_port: int
    cafile: Path
    backends: tuple[Served, Served]
    untrusting: Served  # started without --trusted-proxy
    api_key: str
    body: bytes  # a valid /v1/check body

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, *, source: str | None = None,
                tls: bool = True) -> Answer:
        context = ssl.create_default_context(cafile=str(self.cafile))
        address = (source, 0) if source else None
        connection: http.client.HTTPConnection
        if tls:
            connection = http.client.HTTPSConnection(
                "127.0.0.1", self.https_port, timeout=REQUEST_TIMEOUT, context=context,
                source_address=address)
        else:
            connection = http.client.HTTPConnection(
                "127.0.0.1", self.http_port, timeout=REQUEST_TIMEOUT, source_address=address)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()

    def check(self, *, keyed: bool, forwarded_for: str | None = None,
              source: str | None = None) -> Answer:
        headers = {"Content-Type": "application/json"}
        if keyed:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if forwarded_for:
            headers["X-Forwarded-For"] = forwarded_for
        return self.request("POST", "/v1/check", self.body, headers, source=source)

    def error_log(self) -> str:
        return (self.workdir / "error.log").read_text(errors="replace")


def _make_certificate(directory: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed to make the test certificate "
                    "(apt-get install openssl)", pytrace=False)
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    key.chmod(0o600)
    return cert, key


def _nginx_conf(workdir: Path, rendered: Path) -> Path:
    temp = workdir / "temp"
    temp.mkdir()
    # Run as root (CI is), nginx's workers would become `nobody` and could not enter
    # pytest's 0700 temp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 1;\n"
        f"error_log {workdir}/error.log info;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        f"    client_body_temp_path {temp}/body;\n"
        f"    proxy_temp_path {temp}/proxy;\n"
        f"    fastcgi_temp_path {temp}/fastcgi;\n"
        f"    uwsgi_temp_path {temp}/uwsgi;\n"
        f"    scgi_temp_path {temp}/scgi;\n"
        f"    access_log {workdir}/default-access.log;\n"
        f"    include {rendered};\n"
        "}\n",
        encoding="utf-8",
    )
    return conf


def _wait_for_nginx(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nginx did not start:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def stack(breach: Breach, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    assert NGINX is not None
    workdir = tmp_path_factory.mktemp("nginx")
    keys_db = workdir / "keys.sqlite"
    api_key = create_key(keys_db, workdir).read_text().strip()
    # Anonymous limits small enough to see: one lookup a minute, a burst of two.
    limits = ("--anon-rate", "1", "--anon-burst", "2")
    started: list[Served] = []
    nginx: subprocess.Popen[bytes] | None = None
    try:
        for name in ("backend-1", "backend-2"):
            started.append(start_serve(breach, workdir, keys_db, *limits,
                                       "--trusted-proxy", "127.0.0.1/32", name=name))
        started.append(start_serve(breach, workdir, keys_db, *limits, name="untrusting"))
        cert, key = _make_certificate(workdir)
        https_port, http_port = free_port(), free_port()
        rendered = workdir / "exposure.conf"
        rendered.write_text(render_template({
            "EXPOSURE_BACKEND_1": f"127.0.0.1:{started[0].port}",
            "EXPOSURE_BACKEND_2": f"127.0.0.1:{started[1].port}",
            "EXPOSURE_HTTP_PORT": f"127.0.0.1:{http_port}",
            "EXPOSURE_HTTPS_PORT": f"127.0.0.1:{https_port}",
            "EXPOSURE_TLS_CERT": str(cert),
            "EXPOSURE_TLS_KEY": str(key),
            # The test plays the load balancer in front: its X-Forwarded-For counts.
            "EXPOSURE_TRUSTED_FRONT": "127.0.0.1/32",
            "EXPOSURE_LOOKUP_RATE": "30r/m",
            "EXPOSURE_LOOKUP_BURST": "10",
            "EXPOSURE_ACCESS_LOG": str(workdir / "access.log"),
        }), encoding="utf-8")
        conf = _nginx_conf(workdir, rendered)
        command = [NGINX, "-p", str(workdir), "-c", str(conf), "-g",
                   f"daemon off; pid {workdir}/nginx.pid;"]
        syntax = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        assert syntax.returncode == 0, syntax.stderr
        log = workdir / "nginx.out"
        with log.open("wb") as out:
            nginx = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _wait_for_nginx(nginx, https_port, log)
        expected = breach.expected()
        member = next(m for m in breach.members()
                      if m["nir"] and expected[m["ref"]]["match"] == "strong")
        body = orjson.dumps({"nir": member["nir"], "birth_date": member["birth_date"]})
        yield Stack(nginx, workdir, https_port, http_port, cert,
                    (started[0], started[1]), started[2], api_key, body)
    finally:
        if nginx is not None:
            _stop(nginx)
        for served in started:
            served.stop()


def _checks_served(backend: Served) -> float:
    return metric(backend.get("/metrics"), "exposure_http_requests_total",
                  route="/v1/check", status="200")


def test_tls_termination_and_redirect(stack: Stack) -> None:
    plain = stack.request("POST", "/v1/check", stack.body,
                          {"Content-Type": "application/json"}, tls=False)
    assert plain.status == 308
    assert plain.headers["Location"].startswith("https://")
    page = stack.request("GET", "/")
    assert page.status == 200
    assert "max-age=" in page.headers["Strict-Transport-Security"]
    cookie = page.headers["Set-Cookie"]
    assert cookie.startswith("exposure_csrf=") and "secure" in cookie.lower()
    assert stack.request("GET", "/metrics").status == 404  # scraped on the backends only


def test_requests_spread_across_both_backends(stack: Stack) -> None:
    before = [_checks_served(b) for b in stack.backends]
    for _ in range(20):
        answer = stack.check(keyed=True)
        assert answer.status == 200, answer.body
        assert orjson.loads(answer.body)["found"] is True
        assert answer.headers["Cache-Control"] == "no-store"
    served = [_checks_served(b) - n for b, n in zip(stack.backends, before, strict=True)]
    assert sum(served) == 20
    assert min(served) >= 5, served  # round robin: about 10 each


def test_forwarded_for_only_from_the_trusted_front(stack: Stack) -> None:
    def statuses(count: int, **how: str) -> list[int]:
        return [stack.check(keyed=False, **how).status for _ in range(count)]

    # From the trusted front (127.0.0.1), X-Forwarded-For names the client: each
    # address has its own bucket of 2 per backend, so A runs dry and B does not.
    a = statuses(8, forwarded_for="198.51.100.1")
    assert a.count(200) <= 4 and 429 in a, a
    assert statuses(1, forwarded_for="198.51.100.2") == [200]

    # From anywhere else (127.0.0.2), X-Forwarded-For is ignored: changing it every
    # time does not buy a fresh bucket.
    forged = [stack.check(keyed=False, forwarded_for=f"203.0.113.{i}",
                          source="127.0.0.2").status for i in range(8)]
    assert forged.count(200) <= 4 and 429 in forged, forged

    # A backend started without --trusted-proxy ignores X-Forwarded-For altogether.
    direct = []
    for i in range(4):
        connection = http.client.HTTPConnection("127.0.0.1", stack.untrusting.port,
                                                timeout=REQUEST_TIMEOUT)
        try:
            connection.request("POST", "/v1/check", body=stack.body, headers={
                "Content-Type": "application/json", "X-Forwarded-For": f"192.0.2.{i}"})
            response = connection.getresponse()
            response.read()
            direct.append(response.status)
        finally:
            connection.close()
    assert direct == [200, 200, 429, 429]


def test_nginx_limits_anonymous_lookups_per_address(stack: Stack) -> None:
    answers = [stack.check(keyed=False, forwarded_for="198.51.100.3") for _ in range(14)]
    front = [a for a in answers if a.status == 429 and b"front proxy" in a.body]
    assert front, [a.status for a in answers]  # 30/min with a burst of 10, per address
    assert front[0].headers["Retry-After"] == "2"
    assert front[0].headers["Content-Type"] == "application/problem+json"
    # A keyed request is the backends' business (limited per key), not the address's.
    assert stack.check(keyed=True, forwarded_for="198.51.100.3").status == 200


def test_bulk_streams_through_nginx(
    stack: Stack, breach: Breach, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(stack.api_key)
    out = tmp_path / "results.csv"
    status = client_main(["check", str(breach.dir / "members.csv"), "--url",
                          f"https://127.0.0.1:{stack.https_port}", "--out", str(out),
                          "--api-key-file", str(key_file), "--ca-file", str(stack.cafile)])
    err = capsys.readouterr().err
    assert status == 0, err
    expected = breach.expected()
    with out.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["ref"] for row in rows] == [m["ref"] for m in breach.members()]
    for row in rows:
        assert agrees_with_ground_truth(expected[row["ref"]], row["found"] == "true",
                                        row["match"] or None, row["sources"],
                                        refused=bool(row["error"])), row["ref"]


def _front_limited(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a.status == 429 and b"front proxy" in a.body]


def test_a_switched_off_feature_never_marks_the_backends_down(stack: Stack) -> None:
    # Issue 14 (1): the backends run without an OPRF key. Their 503 made nginx
    # (max_fails=2) take both backends out, and every client got 502 for 10 s.
    for _ in range(4):
        answer = stack.request("GET", "/v1/private/params")
        assert answer.status == 404, answer.status
        assert answer.headers["Content-Type"] == "application/problem+json"
    before = [_checks_served(b) for b in stack.backends]
    assert [stack.check(keyed=True).status for _ in range(10)] == [200] * 10
    served = [_checks_served(b) - n for b, n in zip(stack.backends, before, strict=True)]
    assert min(served) >= 3, served  # both backends still take their share
    assert "temporarily disabled" not in stack.error_log()


def test_a_form_post_with_an_authorization_header_is_limited_like_any_form(
    stack: Stack,
) -> None:
    # Issue 14 (2): the form ignores Authorization, so nginx must not exempt it.
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "Authorization": "Bearer exk_made-up", "X-Forwarded-For": "198.51.100.7"}
    answers = [stack.request("POST", "/", b"nir=1&birth_date=2", headers) for _ in range(14)]
    assert _front_limited(answers), [a.status for a in answers]


def test_ipv6_clients_are_limited_per_64(stack: Stack) -> None:
    # Issue 14 (2): one /64, fourteen addresses, written every way nginx may meet them.
    net = "2001:db8:aa:bb"
    addresses = [f"{net}::{i:x}" for i in range(1, 8)] + [
        f"{net}:{i:x}:0:0:{i:x}" for i in range(8, 12)] + [
        "2001:0DB8:00AA:00BB:0000:0000:0000:0001", f"{net}:1::", f"{net}:ffff:1:2:3"]
    answers = [stack.check(keyed=False, forwarded_for=address) for address in addresses]
    assert _front_limited(answers), [a.status for a in answers]
    # Another /64 of the same /48 is another client.
    assert not _front_limited([stack.check(keyed=False, forwarded_for="2001:db8:aa:cc::1")])
    # Every spelling of a /64 counts against the same client: zeros in any group.
    for network, spellings in {
        "2001:db8:0:0": ["2001:db8::1", "2001:db8::1:2:3:4", "2001:db8:0:0:1::", "2001:db8::"],
        "0:0:0:5": ["::5:0:0:0:1", "0:0:0:5:1:2:3:4"],
    }.items():
        answers = [stack.check(keyed=False, forwarded_for=address)
                   for address in (spellings * 7)[:14]]
        assert _front_limited(answers), (network, [a.status for a in answers])


def test_no_request_lost_when_a_backend_dies(stack: Stack) -> None:
    """Runs last: it kills backend 2."""
    survivor, victim = stack.backends
    results: list[int | str] = []
    tenth_done = threading.Event()

    def send() -> None:
        for i in range(40):
            try:
                results.append(stack.check(keyed=True).status)
            except OSError as exc:
                results.append(type(exc).__name__)
            if i == 9:
                tenth_done.set()

    sender = threading.Thread(target=send)
    sender.start()
    assert tenth_done.wait(timeout=60)
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(timeout=15)
    sender.join(timeout=120)
    assert not sender.is_alive()
    assert results == [200] * 40, results
    # And after nginx has marked it down, everything goes to the survivor.
    before = _checks_served(survivor)
    assert [stack.check(keyed=True).status for _ in range(10)] == [200] * 10
    assert _checks_served(survivor) - before == 10
    log = stack.error_log()
    assert "temporarily disabled" in log  # max_fails reached: the backend is marked down
    # The POSTs that met the dead backend were passed on to the other one.
    access = (stack.workdir / "access.log").read_text(errors="replace")
    victim_address = f"127.0.0.1:{victim.port}"
    retried = [line for line in access.splitlines()
               if f"upstream={victim_address}, " in line and '"POST /v1/check" 200' in line]
    assert retried, "no request was retried on the surviving backend"
