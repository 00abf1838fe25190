"""Property tests of every parser on arbitrary input.

What is already fuzzed elsewhere is not repeated: identity normalisation
(tests/test_identity.py), `load_sources` on arbitrary *text* (tests/test_sources.py),
random JSON values as bulk lines (tests/test_batch.py). Added here:

- NDJSON and CSV bulk bodies of arbitrary bytes, sent to a real `exposure-serve`: the
  answer is 200 (or 422 for a CSV header naming no usable column), one answer per
  non-blank line, numbered 1..N in order, and a summary that adds up;
- `sources.toml` as arbitrary *bytes* and as byte-level mutations of a valid file:
  only `SourcesError`;
- the manifest: arbitrary bytes, and JSON-level mutations of a real manifest written
  back by `write_manifest` (so that they get past its own checksum): `load_manifest`
  raises only `ManifestError`, `verify_generation` returns faults and never raises,
  and `IndexReader` raises only `IndexError_`;
- the shard files read by the C lookups (`indexer/index/_lookups.c`), overwritten,
  cut or grown, with the similar tier's numbers of the manifest changed too, opened
  *without* verification: `IndexReader` refuses them with `IndexError_` or answers
  every lookup (a read outside a file would crash the test process);
- the web form's POST body (urlencoded and multipart, with a valid anti-CSRF token or
  not) and the OPRF evaluate body: never a server error, always the documented
  statuses, `Cache-Control: no-store` on every answer.

Requests go to one real server per module (bounded: a few hundred requests in all).
"""

from __future__ import annotations

import copy
import csv
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from live_server import LiveServer, PrivateCrafted, build_private_crafted, live_server
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from indexer.build.sources import SourcesError, load_sources
from indexer.core.fingerprint import Fingerprinter
from indexer.core.matchkeys import canonical_keys
from indexer.index.generation import current_generation
from indexer.index.lookup import Checker
from indexer.index.manifest import (
    MANIFEST,
    ManifestError,
    load_manifest,
    verify_generation,
    write_manifest,
)
from indexer.index.reader import IndexError_, IndexReader, KeyMismatch
from indexer.private import oprf
from service.resources.apikeys import KeyStore
from service.resources.index_holder import IndexHolder
from service.resources.metrics import Metrics
from service.views.api import sources_document
from service.views.openapi import openapi_document

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=80, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
NDJSON = "application/x-ndjson"


def _schema(name: str) -> Draft202012Validator:
    document = openapi_document()
    registry: Registry[Any] = Registry().with_resource(
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012))
    schema = orjson.loads(orjson.dumps(document["components"]["schemas"][name]).replace(
        b'"#/components', b'"urn:openapi#/components'))
    return Draft202012Validator(schema, registry=registry)


SOURCES_SCHEMA = _schema("Sources")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> PrivateCrafted:
    return build_private_crafted(tmp_path_factory.mktemp("fuzz-breach"))


@pytest.fixture(scope="module")
def served(built: PrivateCrafted, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[LiveServer, str]]:
    root = tmp_path_factory.mktemp("fuzz-serve")
    keys_db = root / "keys.sqlite"
    store = KeyStore(keys_db)
    try:
        _, token = store.create("Fuzzing insurer")
    finally:
        store.close()
    with live_server(built.crafted.index_dir, built.crafted.pepper_file, root,
                     "--anon-rate", "0", "--keys-db", str(keys_db),
                     "--oprf-key-file", str(built.oprf_key_file)) as server:
        yield server, token


# ----------------------------------------------------------------- bulk bodies


IDENTITY_TEXT = st.sampled_from([
    "294037512000591", "2 94 03 75 120 005 91", "253072B07300470", "2530 72b0 7300 470",
    "295109912611199", "1994-03-15", "15/03/1994", "00/00/1994", "31/02/1994", "2999-01-01",
    "Dupont", "D'Artagnan", "Lætitia", "Jean-Pierre", "ß", "Œ", "\u0301", "", " ", "\x00",
    "x" * 300, "1e999", "NaN",
])
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20) | IDENTITY_TEXT,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
FIELD = st.sampled_from(["nir", "birth_date", "last_name", "first_name", "ref", "NIR", "extra"])
RECORD = st.dictionaries(FIELD, JSON_VALUE | IDENTITY_TEXT, max_size=6)


def _json_line(value: Any) -> bytes:
    return orjson.dumps(value)


NDJSON_LINE = st.one_of(
    RECORD.map(_json_line),
    JSON_VALUE.map(_json_line),
    st.binary(max_size=200).map(lambda raw: raw.replace(b"\n", b"")),
    st.text(max_size=80).map(lambda text: text.replace("\n", "").encode("utf-8", "surrogatepass")),
    RECORD.map(lambda r: b"\xef\xbb\xbf" + _json_line(r) + b"\r"),  # BOM and CRLF
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),  # deep nesting
    st.sampled_from([b"", b"   ", b"\t", b"\r", b"\xff\xfe", b"{", b"}", b"null", b"[]"]),
)


def _clean(raw: bytes) -> str:
    """The contract's blank line: nothing but white space (and a byte order mark)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    return text.strip().lstrip("\ufeff").strip()


def _answers(body: bytes) -> tuple[list[dict[str, Any]], dict[str, int]]:
    assert body.endswith(b"\n")
    lines = [orjson.loads(line) for line in body.split(b"\n") if line]
    *answers, last = lines
    return answers, last["summary"]


def _check_stream(answers: list[dict[str, Any]], summary: dict[str, int], expected: int) -> None:
    assert [a["line"] for a in answers] == list(range(1, expected + 1))
    assert summary["lines"] == expected
    assert summary["errors"] == sum("error" in a for a in answers)
    assert summary["found"] == sum(bool(a.get("found")) for a in answers)
    for answer in answers:
        if "error" in answer:
            assert set(answer["error"]) == {"field", "code", "message"}
            assert isinstance(answer["error"]["code"], str)
        else:
            assert answer["match"] in ("strong", "weak", None)
            assert answer["found"] is (answer["match"] is not None)


@FUZZ
@given(lines=st.lists(NDJSON_LINE, max_size=40), final_newline=st.booleans())
def test_any_ndjson_body_gets_one_answer_per_line(
    served: tuple[LiveServer, str], lines: list[bytes], final_newline: bool
) -> None:
    server, token = served
    body = b"\n".join(lines) + (b"\n" if final_newline else b"")
    answer = server.request("POST", "/v1/check/batch", body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": NDJSON})
    assert answer.status == 200, answer.body[:300]
    assert answer.headers["Cache-Control"] == "no-store"
    answers, summary = _answers(answer.body)
    _check_stream(answers, summary, sum(1 for raw in body.split(b"\n") if _clean(raw)))


CSV_HEADERS = st.sampled_from([
    "ref,nir,last_name,first_name,birth_date", "REF;NIR;NOM;PRENOM;DATE_NAISSANCE",
    "id\tssn\tsurname\tgiven_name\tdate_of_birth", "nir;date_naissance", "nom;prenom",
    "x;y;z", "", ";;;", '"nir","birth_date"', "\ufeffnir,birth_date",
])
CSV_CELL = IDENTITY_TEXT | st.text(max_size=12) | st.sampled_from(['"', '""', ";", ",", "\t",
                                                                   '"a;b"', "\r", "\x00"])


@FUZZ
@given(header=CSV_HEADERS | st.text(max_size=40),
       rows=st.lists(st.lists(CSV_CELL, max_size=7), max_size=30),
       delimiter=st.sampled_from([";", ",", "\t"]),
       encoding=st.sampled_from(["utf-8", "cp1252"]))
def test_any_csv_body_gets_one_answer_per_row_or_a_header_422(
    served: tuple[LiveServer, str], header: str, rows: list[list[str]], delimiter: str,
    encoding: str
) -> None:
    server, token = served
    text = header + "\n" + "".join(delimiter.join(row) + "\n" for row in rows)
    body = text.encode(encoding, errors="replace")
    answer = server.request("POST", "/v1/check/batch", body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "text/csv"})
    assert answer.headers["Cache-Control"] == "no-store"
    if answer.status == 422:
        problem = answer.json()
        assert problem["status"] == 422 and problem["errors"]
        return
    assert answer.status == 200, answer.body[:300]
    answers, summary = _answers(answer.body)
    _check_stream(answers, summary, _csv_records(body))


def _csv_records(body: bytes) -> int:
    """The lines a CSV body's answer counts: its records after the header row (the first
    non-blank line), a record going on while csv's own reader is inside a quoted field;
    blank ones are no line, and one whose quote never closes is one (issue 14)."""
    lines = body.split(b"\n")
    start = next((i for i, raw in enumerate(lines) if _clean(raw)), None)
    if start is None:
        return 0  # a body of blank lines: no header, no line
    delimiter = max((";", ",", "\t"), key=_clean(lines[start]).count)  # as the service sniffs
    count, open_record = 0, None
    for raw in lines[start + 1:]:
        record = raw if open_record is None else open_record + b"\n" + raw
        if b'"' in record and _inside_quotes(record, delimiter):
            open_record = record
            continue
        open_record = None
        count += bool(_clean(record))
    return count + (open_record is not None)


def _inside_quotes(record: bytes, delimiter: str) -> bool:
    asked = False

    def lines() -> Iterator[str]:
        nonlocal asked
        try:
            yield record.decode("utf-8") + "\n"
        except UnicodeDecodeError:
            yield record.decode("cp1252", errors="replace") + "\n"
        asked = True

    try:
        next(csv.reader(lines(), delimiter=delimiter), None)
    except csv.Error:
        return False
    return asked


# ----------------------------------------------------------------- sources.toml

VALID_SOURCES = b"""\
[[sources]]
id = "viamedis-2024"
title = "Viamedis"
breach_date = "2024-01-29"
description = "Third-party payment operator."
path = "x.csv"
encoding = "cp1252"
delimiter = ";"
[sources.columns]
nir = "NIR"
last_name = "NOM"
birth_date = "DATE_NAISSANCE"
"""


@st.composite
def _mutated(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if action == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif action == "delete" and data:
            del data[position:position + draw(st.integers(1, 8))]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[position:]
    return bytes(data)


@FUZZ
@given(raw=st.binary(max_size=400) | _mutated(VALID_SOURCES))
def test_sources_toml_of_any_bytes_raises_only_sources_error(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    directory = tmp_path_factory.mktemp("sources", numbered=True)
    (directory / "x.csv").write_bytes(b"NIR;DATE_NAISSANCE\n")
    toml_path = directory / "sources.toml"
    toml_path.write_bytes(raw)
    try:
        sources = load_sources(toml_path)
    except SourcesError as exc:
        assert str(exc).startswith(str(toml_path))
    else:
        assert sources and all(source.path.is_file() for source in sources)


# ----------------------------------------------------------------- manifest


@pytest.fixture(scope="module")
def scratch_generation(built: PrivateCrafted, tmp_path_factory: pytest.TempPathFactory
                       ) -> tuple[Path, dict[str, Any]]:
    """A copy of a real published generation whose manifest each example overwrites."""
    source = current_generation(built.crafted.index_dir)
    index_dir = tmp_path_factory.mktemp("manifest-fuzz")
    target = index_dir / source.name
    shutil.copytree(source, target)
    (index_dir / "current").symlink_to(source.name)
    return target, load_manifest(target)


@st.composite
def _manifest_mutation(draw: st.DrawFn, manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with a few values replaced, removed or added, anywhere in the tree."""
    mutated = copy.deepcopy(manifest)
    for _ in range(draw(st.integers(1, 3))):
        node: Any = mutated
        path: list[Any] = []
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node)) if isinstance(node, dict)
                       else st.integers(0, len(node) - 1))
            path.append(key)
            node = node[key]
        if not path:
            path = [draw(st.sampled_from(sorted(mutated)))]
        parent: Any = mutated
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = draw(JSON_VALUE)
        else:
            parent[path[-1]] = draw(JSON_VALUE | st.sampled_from(
                [0, -1, 1, 2**62, "", "3", "../x", "/etc/passwd", [], {}, None, 1.5]))
    return mutated


def _write_mutation(generation: Path, data: st.DataObject, manifest: dict[str, Any]) -> None:
    mutated = data.draw(_manifest_mutation(manifest))
    try:
        # Written by the indexer's own writer, so that the manifest's checksum of
        # itself holds and the shape checks behind it are what gets exercised.
        write_manifest(generation, mutated)
    except (TypeError, ValueError):
        write_manifest(generation, manifest)
        assume(False)  # not representable as JSON (an integer past 64 bits)


def _check_generation(generation: Path, fingerprinter: Fingerprinter) -> None:
    try:
        load_manifest(generation)
    except ManifestError:
        pass
    faults = verify_generation(generation, deep=True)
    assert isinstance(faults, list) and all(isinstance(f, str) for f in faults)
    try:
        IndexReader(generation, fingerprinter, verify=True).close()
    except IndexError_:
        pass


@FUZZ
@given(raw=st.binary(max_size=300) | st.data())
def test_manifest_of_any_bytes_is_refused_cleanly(
    scratch_generation: tuple[Path, dict[str, Any]], built: PrivateCrafted, raw: Any
) -> None:
    generation, _ = scratch_generation
    path = generation / MANIFEST
    original = path.read_bytes()
    if not isinstance(raw, bytes):
        raw = raw.draw(_mutated(original))
    path.write_bytes(raw)
    try:
        _check_generation(generation, Fingerprinter(built.crafted.pepper_file.read_bytes()))
    finally:
        path.write_bytes(original)


@settings(FUZZ)
@given(data=st.data())
def test_mutated_manifest_is_refused_cleanly(
    scratch_generation: tuple[Path, dict[str, Any]], built: PrivateCrafted, data: st.DataObject
) -> None:
    generation, manifest = scratch_generation
    _write_mutation(generation, data, manifest)
    try:
        _check_generation(generation, Fingerprinter(built.crafted.pepper_file.read_bytes()))
    finally:
        write_manifest(generation, manifest)


@FUZZ
@given(data=st.data())
def test_the_service_refuses_a_mutated_manifest_cleanly(
    scratch_generation: tuple[Path, dict[str, Any]], built: PrivateCrafted, data: st.DataObject
) -> None:
    """Whatever the manifest says, the index holder serves it or refuses it, never raises
    (but for another pepper's key id, which stops the start on purpose); a generation it
    serves has a sources document as the OpenAPI document describes it."""
    generation, manifest = scratch_generation
    _write_mutation(generation, data, manifest)
    holder = IndexHolder(generation.parent, Fingerprinter(built.crafted.pepper_file.read_bytes()),
                         Metrics(), describe=sources_document)
    try:
        holder.load_initial()
    except KeyMismatch:
        return
    finally:
        write_manifest(generation, manifest)
    if holder.ready:
        SOURCES_SCHEMA.validate(holder.sources)
        holder.checker.reader.close()
    else:
        assert holder.last_error and holder.last_error.startswith(f"generation {generation.name}")


# ----------------------------------------------------------------- the form

FORM_FIELDS = st.sampled_from(["nir", "birth_date", "last_name", "first_name", "csrf_token",
                               "lang", "x", "nir[]", ""])


def _form_token(server: LiveServer) -> str:
    answer = server.request("GET", "/")
    assert answer.status == 200
    match = re.search(r"exposure_csrf=([A-Za-z0-9_-]{43})", answer.headers["Set-Cookie"])
    assert match
    return match.group(1)


@FUZZ
@given(fields=st.lists(st.tuples(FORM_FIELDS, IDENTITY_TEXT | st.text(max_size=30)),
                       max_size=8),
       garbage=st.binary(max_size=200), kind=st.sampled_from(["urlencoded", "multipart",
                                                              "bytes", "no-token"]))
def test_any_form_post_is_answered_with_a_page(
    served: tuple[LiveServer, str], fields: list[tuple[str, str]], garbage: bytes, kind: str
) -> None:
    from urllib.parse import quote

    server, _ = served
    token = _form_token(server)
    headers = {"Cookie": f"exposure_csrf={token}"}
    pairs = [("csrf_token", token), *fields] if kind != "no-token" else fields
    if kind == "multipart":
        boundary = "fuzzboundary7MA4YWxk"
        parts = b"".join(
            b"--" + boundary.encode() + b"\r\nContent-Disposition: form-data; name=\""
            + name.encode("utf-8", "surrogatepass") + b"\"\r\n\r\n"
            + value.encode("utf-8", "surrogatepass") + b"\r\n" for name, value in pairs)
        body = parts + garbage + b"--" + boundary.encode() + b"--\r\n"
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    else:
        body = "&".join(f"{quote(n, safe='')}={quote(v, safe='', errors='replace')}"
                        for n, v in pairs).encode()
        if kind == "bytes":
            body += b"&" + garbage
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    answer = server.request("POST", "/", body, headers=headers)
    assert answer.status in (200, 400, 403, 413, 422), (answer.status, answer.body[:300])
    assert answer.headers["Content-Type"].startswith("text/html")
    assert answer.headers["Cache-Control"] == "no-store"


# ----------------------------------------------------------------- OPRF evaluate


def _valid_blinded(seed: int) -> str:
    """A real blinded element (a valid ristretto255 encoding), as a client sends it."""
    _, blinded = oprf.blind(b"fuzz-%d" % seed)
    return blinded.hex()


ITEM = st.one_of(
    st.fixed_dictionaries({
        "bucket": st.integers(-5, 10) | st.integers() | st.booleans() | st.floats()
        | st.text(max_size=5) | st.none(),
        "blinded": st.integers(0, 50).map(_valid_blinded)
        | st.binary(min_size=32, max_size=32).map(bytes.hex)
        | st.text(alphabet="0123456789abcdefABCDEFxyz", max_size=70) | JSON_VALUE,
    }),
    JSON_VALUE,
)


@FUZZ
@given(body=st.one_of(
    st.fixed_dictionaries({"items": st.lists(ITEM, max_size=12)}),
    st.fixed_dictionaries({"items": JSON_VALUE}),
    JSON_VALUE,
).map(lambda value: json.dumps(value).encode()) | st.binary(max_size=200))
def test_any_evaluate_body_gets_a_documented_answer(
    served: tuple[LiveServer, str], body: bytes
) -> None:
    server, _ = served
    answer = server.request("POST", "/v1/private/evaluate", body,
                            headers={"Content-Type": "application/json"})
    assert answer.status in (200, 400, 413, 422), (answer.status, answer.body[:300])
    assert answer.headers["Cache-Control"] == "no-store"
    payload = answer.json()
    if answer.status == 200:
        sent = json.loads(body)["items"]
        assert len(payload["items"]) == len(sent)
        sizes = {len(item["entries"]) for item in payload["items"]}
        assert len(sizes) == 1  # every bucket answers with the same number of entries
    else:
        assert answer.headers["Content-Type"].startswith("application/problem+json")
        assert payload["status"] == answer.status


# --- shard files, read in C -----------------------------------------------------------

_SHARD_KINDS = ("fp", "meta", "bloom", "sim", "simoff", "simrows")
_SIMILAR_NUMBERS = ("entries", "bucket_bits", "row_bits", "rows")


@st.composite
def _overwritten(draw: st.DrawFn, original: bytes) -> bytes:
    """Runs of the bytes replaced, the size kept (so that the lookups read them), or the
    file cut or grown."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 8))):
        if data and not draw(st.sampled_from([False] * 19 + [True])):
            at = draw(st.integers(0, len(data) - 1))
            run = draw(st.binary(min_size=1, max_size=16))[: len(data) - at]
            data[at:at + len(run)] = run
        else:
            data = data[: draw(st.integers(0, len(data)))] + draw(st.binary(max_size=8))
    return bytes(data)


@pytest.fixture(scope="module")
def scratch_shards(built: PrivateCrafted, tmp_path_factory: pytest.TempPathFactory
                   ) -> tuple[Path, dict[str, Any]]:
    source = current_generation(built.crafted.index_dir)
    target = tmp_path_factory.mktemp("shard-fuzz") / source.name
    shutil.copytree(source, target)
    return target, load_manifest(target)


@FUZZ
@given(data=st.data())
def test_shard_files_of_any_content_never_crash_the_lookups(
    scratch_shards: tuple[Path, dict[str, Any]], built: PrivateCrafted, data: st.DataObject
) -> None:
    generation, manifest = scratch_shards
    fingerprinter = Fingerprinter(built.crafted.pepper_file.read_bytes())
    count = int(manifest["shards"]["count"])
    originals: dict[Path, bytes] = {}
    stored = [int(v) for n in range(count) for v in
              np.fromfile(generation / f"shards/{n:03d}.fp", dtype="<u8")]
    try:
        for _ in range(data.draw(st.integers(1, 3))):
            shard = data.draw(st.integers(0, count - 1))
            path = generation / f"shards/{shard:03d}.{data.draw(st.sampled_from(_SHARD_KINDS))}"
            originals.setdefault(path, path.read_bytes())
            path.write_bytes(data.draw(_overwritten(path.read_bytes())))
        if data.draw(st.sampled_from([False, False, False, True])):
            mutated = copy.deepcopy(manifest)
            entry = mutated["similar"]["shards"][data.draw(st.integers(0, count - 1))]
            entry[data.draw(st.sampled_from(_SIMILAR_NUMBERS))] = data.draw(st.integers(-3, 70))
            write_manifest(generation, mutated)
        try:
            reader = IndexReader(generation, fingerprinter, verify=False)
        except IndexError_:
            event("refused at opening")
            return
        event("opened and looked up")
        try:
            strangers = data.draw(st.lists(st.integers(0, 2**64 - 1), max_size=50))
            fps = stored + strangers
            for fp in fps:
                reader.lookup_one(fp)
                for mask in fingerprinter.namespace_masks:
                    reader.similar.one(fp ^ mask)
            array = np.array(fps, dtype="uint64")
            reader.lookup_hits(array)
            reader.similar.hits(array)
            queries = [canonical_keys({"last_name": name, "first_name": first,
                                       "birth_date": "1980-03-04"})
                       for name in ("Dupont", "Dupond", "Martin") for first in ("Jean", "Jan")]
            checker = Checker(reader)
            verdicts = checker.check_keys(queries * 10) + [checker.check_one(q) for q in queries]
            assert all(isinstance(v["found"], bool) for v in verdicts)
        finally:
            reader.close()
    finally:
        for path, original in originals.items():
            path.write_bytes(original)
        write_manifest(generation, manifest)
