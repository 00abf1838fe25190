"""Privacy, proven on the running program: no identifier that was sent survives anywhere.

A real `exposure-serve` (logging at DEBUG, its own TMPDIR, its own key database,
private lookups on) is sent a realistic day of traffic: single checks anonymous and
with a key, found, not found and mistyped; bulk NDJSON and CSV with bad lines; the
web form in French and English, with and without its anti-forgery token; private
lookups through the real client; malformed, oversized, wrongly typed and rate-limited
requests; identifiers in paths and query strings. Then every byte the service could
have left them in is scanned for every identifier sent, in every written form (as
sent, normalised, separators and case changed, JSON-, URL- and HTML-escaped):

- every response body and header (the form's own input fields excepted on the page
  that asks the person to correct them: those are echoed to the sender on purpose);
- the service's log (stderr, every line);
- every file under the index directory, the key database (and its journal files),
  and the service's temporary directory;
- the /metrics page.

And every answer that carries a result or an error has `Cache-Control: no-store`.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
import pytest
from conftest import Breach
from live_server import Answer, LiveServer, clean_env, live_server

from client.private import connect
from indexer.build.local import BuildOptions, build_index
from indexer.build.private import build_private
from indexer.core.identity import IdentityError, fold_name, normalize_birth_date, normalize_nir
from indexer.index.generation import current_generation
from indexer.index.manifest import load_manifest, write_manifest
from indexer.private import oprf
from service.resources.apikeys import KeyStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MIN_FORM = 5  # shorter fragments (LE, JO, 1994) would match by chance
PEOPLE_COUNT = 40


@dataclass
class Exchange:
    method: str
    path: str
    answer: Answer


@dataclass(frozen=True)
class Deployment:
    index_dir: Path
    pepper_file: Path
    oprf_key_file: Path
    keys_db: Path
    tmp: Path
    work: Path


@pytest.fixture(scope="module")
def deployment(breach: Breach, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """The synthetic breach built into an index of its own, with a private part."""
    root = tmp_path_factory.mktemp("privacy")
    index_dir = root / "index"
    build_index(breach.sources_toml, index_dir, breach.pepper_file.read_bytes(),
                BuildOptions(shards=4, workers=1))
    generation = current_generation(index_dir)
    key = oprf.generate_private_key()
    key_file = root / "oprf.key"
    key_file.write_text(key.hex() + "\n")
    key_file.chmod(0o600)
    section = build_private(breach.sources_toml, generation, key, bucket_bits=8,
                            output_bytes=8, workers=1)
    manifest = load_manifest(generation)
    manifest["private"] = section
    write_manifest(generation, manifest)
    (root / "tmp").mkdir()
    return Deployment(index_dir, breach.pepper_file, key_file, root / "keys" / "keys.sqlite",
                      root / "tmp", root / "serve")


# --------------------------------------------------------------------- identifiers


def _people(breach: Breach) -> list[dict[str, str]]:
    """Members of the insurer's file, found and not found, with every field filled in
    (weak-only members contribute their names and date)."""
    members = breach.members()
    expected = breach.expected()
    found = [m for m in members if expected[m["ref"]]["in_breach"] == "true"]
    absent = [m for m in members if expected[m["ref"]]["in_breach"] != "true"]
    chosen = found[: PEOPLE_COUNT // 2] + absent[: PEOPLE_COUNT // 2]
    # The identity fields only: the insurer's contact columns (address, e-mail) are never
    # sent to the service, and a postcode like 20000 is also a number the service prints.
    identity = ("nir", "birth_date", "last_name", "first_name")
    return [{k: m[k] for k in identity if k in m} for m in chosen]


def _nir_forms(value: str) -> set[str]:
    forms = {value}
    try:
        nir = normalize_nir(value)
    except IdentityError:
        return forms
    groups = [nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:15]]
    return forms | {nir, nir[:13], " ".join(groups), ".".join(groups), "-".join(groups),
                    nir[:13] + " " + nir[13:]}


def _date_forms(value: str) -> set[str]:
    forms = {value}
    try:
        iso = normalize_birth_date(value)
    except IdentityError:
        return forms
    year, month, day = iso.split("-")
    return forms | {iso, f"{day}/{month}/{year}", f"{day}-{month}-{year}",
                    f"{day}.{month}.{year}", f"{day}{month}{year}", f"{year}{month}{day}"}


def _name_forms(value: str) -> set[str]:
    forms = {value, value.upper(), value.lower(), value.title()}
    try:
        forms.add(fold_name(value))
    except IdentityError:
        pass
    return forms


def forms_of(people: Iterable[dict[str, str]]) -> set[str]:
    """Every way an identifier of these people could be written down."""
    forms: set[str] = set()
    for person in people:
        for field, value in person.items():
            if not value:
                continue
            if field == "nir":
                written = _nir_forms(value)
            elif field == "birth_date":
                written = _date_forms(value)
            else:
                written = _name_forms(value)
            for form in written:
                forms |= {form, json.dumps(form)[1:-1], quote(form), quote(form, safe=""),
                          html.escape(form), urlencode({"x": form})[2:]}
    return {form for form in forms if len(form) >= MIN_FORM}


def leaks(data: bytes, forms: Iterable[str]) -> list[str]:
    lowered = data.lower()
    found = []
    for form in forms:
        for encoding in ("utf-8", "cp1252"):
            try:
                needle = form.encode(encoding).lower()
            except UnicodeEncodeError:
                continue
            if needle in lowered:
                found.append(form)
                break
    return found


def _without_input_values(page: bytes) -> bytes:
    """The form page with its input fields emptied: on a 422 the page gives the person
    back what they typed, so that they can correct it (sent to them, never stored)."""
    return re.sub(rb'value="[^"]*"', b'value=""', page)


# --------------------------------------------------------------------- the traffic


class Traffic:
    def __init__(self, server: LiveServer, token: str) -> None:
        self.server, self.token = server, token
        self.exchanges: list[Exchange] = []

    def send(self, method: str, path: str, body: bytes | dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> Answer:
        answer = self.server.request(method, path, body, headers)
        self.exchanges.append(Exchange(method, path, answer))
        return answer

    def keyed(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _typo(person: dict[str, str]) -> dict[str, str]:
    nir = person["nir"].replace(" ", "")
    broken = dict(person)
    if nir:
        broken["nir"] = nir[:-1] + str((int(nir[-1]) + 1) % 10)
    broken["last_name"] = person["last_name"] + "3"
    return broken


def send_everything(traffic: Traffic, people: list[dict[str, str]]) -> None:
    keyed = traffic.keyed()
    json_type = {"Content-Type": "application/json"}
    for person in people:
        full = {k: v for k, v in person.items() if v}
        strong = {k: full[k] for k in ("nir", "birth_date") if k in full}
        weak = {k: full[k] for k in ("last_name", "first_name", "birth_date") if k in full}
        for body in (full, strong, weak, _typo(person), {"nir": person["nir"]},
                     {**full, "birth_date": "31/02/" + person["birth_date"][-4:]}):
            traffic.send("POST", "/v1/check", body, keyed)
    first = people[0]
    raw = json.dumps(first).encode()
    traffic.send("POST", "/v1/check", raw[:-3], {**keyed, **json_type})  # 400
    traffic.send("POST", "/v1/check", raw, {**keyed, "Content-Type": "text/plain"})  # 415
    traffic.send("POST", "/v1/check", {**first, "pad": "x" * 20_000}, keyed)  # 413
    traffic.send("POST", "/v1/check", first, {"Authorization": "Bearer exk_" + first["nir"]})
    traffic.send("GET", "/v1/check?" + urlencode(first))  # 405
    traffic.send("GET", "/v1/people/" + quote(first["nir"]) + "/" + quote(first["last_name"]))
    traffic.send("GET", "/?" + urlencode(first))

    # Bulk, NDJSON and CSV, with a broken line, a bad ref and a mistyped member.
    lines = [orjson.dumps({"ref": f"r{i}", **p}) for i, p in enumerate(people)]
    lines += [b'{"ref": "broken", "nir": "' + first["nir"].encode(),
              orjson.dumps({"ref": first["nir"] * 10, **first}),
              orjson.dumps({"ref": "typo", **_typo(first)})]
    traffic.send("POST", "/v1/check/batch", b"\n".join(lines) + b"\n",
                 {**keyed, "Content-Type": "application/x-ndjson"})
    csv_text = "ref;nir;nom;prenom;date_naissance\n" + "".join(
        f"{i};{p['nir']};{p['last_name']};{p['first_name']};{p['birth_date']}\n"
        for i, p in enumerate(people))
    traffic.send("POST", "/v1/check/batch", csv_text.encode("cp1252", "replace"),
                 {**keyed, "Content-Type": "text/csv"})
    headerless = "".join(f"{p['nir']};{p['last_name']};{p['birth_date']}\n" for p in people)
    traffic.send("POST", "/v1/check/batch", headerless.encode(),  # 422: no header row
                 {**keyed, "Content-Type": "text/csv"})
    traffic.send("POST", "/v1/check/batch", b"\n".join(lines),  # 401
                 {"Content-Type": "application/x-ndjson"})

    # The web form, in both languages, with and without its token.
    for lang in ("fr", "en"):
        page = traffic.send("GET", f"/?lang={lang}")
        cookie = page.headers["Set-Cookie"].split(";")[0]
        token = cookie.split("=", 1)[1]
        form_type = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
        for person in people[:8]:
            for fields in (person, _typo(person)):
                traffic.send("POST", f"/?lang={lang}",
                             urlencode({**fields, "csrf_token": token}).encode(), form_type)
        traffic.send("POST", f"/?lang={lang}", urlencode(first).encode(),
                     {**form_type, "Cookie": "exposure_csrf=" + "A" * 43})  # 403

    # Private lookups through the real client, and an evaluate call that is refused.
    asyncio.run(_private_checks(traffic.server, traffic.token, people[:10]))
    traffic.send("POST", "/v1/private/evaluate", {"items": [
        {"bucket": 1, "blinded": first["nir"]}, {"bucket": first["nir"], "blinded": "00"}]})
    for path in ("/v1/sources", "/readyz", "/healthz", "/openapi.json", "/v1/private/params"):
        traffic.send("GET", path)
    # Last, anonymous single checks: the rest of the address's burst, then 429s.
    for person in people:
        traffic.send("POST", "/v1/check", {k: v for k, v in person.items() if v})


async def _private_checks(server: LiveServer, token: str, people: list[dict[str, str]]
                         ) -> None:
    async with aiohttp.ClientSession() as session:
        checker = await connect(f"http://127.0.0.1:{server.port}", session, api_key=token)
        outcomes = await checker.check_many(people)
    assert len(outcomes) == len(people)


# --------------------------------------------------------------------- the proof


@pytest.fixture(scope="module")
def observed(deployment: Deployment, breach: Breach) -> Iterator[tuple[Traffic, LiveServer]]:
    deployment.keys_db.parent.mkdir(parents=True, exist_ok=True)
    store = KeyStore(deployment.keys_db)
    try:
        token = store.create("Privacy insurer")[1]
    finally:
        store.close()
    env = clean_env(TMPDIR=str(deployment.tmp), TEMP=str(deployment.tmp),
                    TMP=str(deployment.tmp))
    with live_server(deployment.index_dir, deployment.pepper_file, deployment.work,
                     "--keys-db", str(deployment.keys_db), "--anon-burst", "40",
                     "--oprf-key-file", str(deployment.oprf_key_file),
                     "--log-level", "DEBUG", env=env) as server:
        traffic = Traffic(server, token)
        send_everything(traffic, _people(breach))
        traffic.send("GET", "/metrics")
        # Stop it the way an operator does, so that everything is flushed to disk.
        assert server.stop() == 0
        yield traffic, server


@pytest.fixture(scope="module")
def identifiers(breach: Breach, observed: tuple[Traffic, LiveServer]) -> set[str]:
    traffic, _ = observed
    forms = forms_of(_people(breach))
    forms |= forms_of(_typo(p) for p in _people(breach))
    # Texts that the service shows with nothing sent (its own pages and documents)
    # cannot prove anything: a member called like a word of the French page, say.
    baseline = b"".join(e.answer.body for e in traffic.exchanges
                        if e.method == "GET" and e.path in ("/?lang=fr", "/?lang=en",
                                                            "/openapi.json", "/v1/sources"))
    common = set(leaks(baseline, forms))
    assert len(common) < len(forms) / 20, common
    return forms - common


def test_the_traffic_was_realistic(observed: tuple[Traffic, LiveServer]) -> None:
    traffic, _ = observed
    statuses = {e.answer.status for e in traffic.exchanges}
    assert {200, 400, 401, 403, 404, 405, 413, 415, 422, 429} <= statuses
    bodies = b"".join(e.answer.body for e in traffic.exchanges)
    assert b'"found":true' in bodies and b'"found":false' in bodies


def test_no_answer_holds_an_identifier(observed: tuple[Traffic, LiveServer],
                                       identifiers: set[str]) -> None:
    traffic, _ = observed
    for exchange in traffic.exchanges:
        body = exchange.answer.body
        if exchange.path.startswith("/?") and exchange.method == "POST" \
                and exchange.answer.status == 422:
            body = _without_input_values(body)
        headers = "\n".join(f"{k}: {v}" for k, v in exchange.answer.headers.items()).encode()
        leaked = leaks(body + b"\n" + headers, identifiers)
        assert not leaked, (exchange.method, exchange.path.split("?")[0],
                            exchange.answer.status, f"{len(leaked)} identifier form(s)")


def test_every_result_and_error_is_no_store(observed: tuple[Traffic, LiveServer]) -> None:
    traffic, _ = observed
    carries_result = ("/v1/check", "/", "/v1/private/evaluate")
    for exchange in traffic.exchanges:
        path = exchange.path.split("?")[0]
        if exchange.answer.status >= 400 or path in carries_result:
            assert exchange.answer.headers.get("Cache-Control") == "no-store", \
                (exchange.method, path, exchange.answer.status)


def test_the_log_holds_no_identifier(observed: tuple[Traffic, LiveServer],
                                     identifiers: set[str]) -> None:
    _, server = observed
    log = server.log.read_bytes()
    assert log.count(b'"msg":"request"') >= 250  # the log did record the traffic
    assert not leaks(log, identifiers)


def test_the_metrics_hold_no_identifier(observed: tuple[Traffic, LiveServer],
                                        identifiers: set[str]) -> None:
    traffic, _ = observed
    metrics = next(e.answer for e in traffic.exchanges if e.path == "/metrics")
    assert metrics.status == 200 and b"exposure_http_requests_total" in metrics.body
    assert not leaks(metrics.body, identifiers)


def _files(*roots: Path) -> list[Path]:
    return [path for root in roots for path in sorted(root.rglob("*")) if path.is_file()]


def test_no_file_the_service_touched_holds_an_identifier(
    observed: tuple[Traffic, LiveServer], deployment: Deployment, identifiers: set[str]
) -> None:
    files = _files(deployment.index_dir, deployment.keys_db.parent, deployment.tmp)
    assert any(path.suffix == ".fp" for path in files)
    assert any(path.name.startswith("keys.sqlite") for path in files)
    for path in files:
        assert not leaks(path.read_bytes(), identifiers), path.name
    # Nothing was written to the temporary directory: bodies are streamed, and libsodium
    # is loaded in place (indexer/private/ristretto.py), not copied there.
    assert _files(deployment.tmp) == []


def test_the_scan_would_see_a_leak(deployment: Deployment, identifiers: set[str],
                                   tmp_path: Path) -> None:
    """The scanner itself, on a planted leak: a NIR as it would be normalised."""
    shutil.copy(deployment.keys_db, tmp_path / "copy.sqlite")
    nir = next(form for form in identifiers if re.fullmatch(r"[0-9AB]{15}", form))
    planted = (tmp_path / "copy.sqlite").read_bytes() + nir.encode()
    assert leaks(planted, identifiers)
