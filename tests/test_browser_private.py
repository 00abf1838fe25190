"""The private check of the web form, in a real browser (issue 8 item 5, docs/design.md §7).

Debian's headless Chromium runs `static/private.js` and the vendored `noble-oprf.js`,
served by the real app over a real index with a private part. The tests prove that:
- the JavaScript OPRF reproduces the RFC 9497 vectors and agrees with indexer/private/oprf.py,
  and its bucket with `bucket_of`;
- the JavaScript normalisation agrees with indexer/core/{identity,matchkeys}.py on the
  docs/design.md §3 vectors, on every member of the synthetic member file, and on every
  assigned code point for names and every Unicode digit for dates;
- a private check shows the same found/match as the plain `/v1/check`, while no
  request the page sends (URL, headers, body) carries the NIR, the names or the date
  in any written form: the form is never posted, and the one POST is
  `{"items": [{"bucket", "blinded"}]}`;
- without JavaScript the ordinary form works as before.

Screenshots go to each test's `tmp_path`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

import aiohttp
import pytest
from conftest import Breach, query_fields
from playwright.async_api import Browser, Page, Request, expect
from test_browser import CHROMIUM, PHONE, Watch, axe, new_page
from test_form import CATALOGUES, pick
from test_oprf import RFC9497_OPRF_VECTORS

from indexer.build.local import BuildOptions, build_index
from indexer.build.private import build_private
from indexer.core.identity import IdentityError, fold_name, normalize_birth_date, normalize_nir
from indexer.core.matchkeys import MATCHED_ON, QueryError, canonical_keys, exact_keys, key_kind
from indexer.index.generation import current_generation
from indexer.index.manifest import load_manifest, write_manifest
from indexer.private import oprf
from service.app import create_app
from service.settings import Settings

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is missing: `apt-get install chromium` (CI installs it)",
    ),
]

TODAY = dt.date(2024, 6, 15)
BAD_CHECKSUM_NIR = "2 95 10 99 126 111 99"


# ------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def private_index(breach: Breach, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(index dir, OPRF key file): the session's breach, built again with a private part
    the way `exposure-index build --private` does before it publishes."""
    root = tmp_path_factory.mktemp("browser-private")
    index_dir = root / "index"
    build_index(breach.sources_toml, index_dir, breach.pepper_file.read_bytes(),
                BuildOptions(shards=4, workers=1))
    generation = current_generation(index_dir)
    key = oprf.generate_private_key()
    key_file = root / "oprf.key"
    key_file.write_text(key.hex() + "\n", encoding="ascii")
    key_file.chmod(0o600)
    section = build_private(breach.sources_toml, generation, key, bucket_bits=None,
                            output_bytes=8, workers=1)
    manifest = load_manifest(generation)
    manifest["private"] = section
    write_manifest(generation, manifest)
    return index_dir, key_file


@pytest.fixture
async def base_url(aiohttp_server: Callable[..., Any], make_settings: Callable[..., Settings],
                   private_index: tuple[Path, Path]) -> str:
    index_dir, key_file = private_index
    settings = make_settings(index_dir=index_dir, oprf_key_file=key_file)
    server = await aiohttp_server(create_app(settings))
    return str(server.make_url("")).rstrip("/")


async def library_page(browser: Browser, base_url: str) -> tuple[Page, Watch]:
    """The form page, its scripts loaded: window.ExposurePrivate is the code under test."""
    page, watch = await new_page(browser, base_url, locale="fr-FR", viewport=PHONE)
    await page.goto(base_url + "/")
    await page.wait_for_function("window.ExposurePrivate !== undefined")
    return page, watch


# ---------------------------------------------------------------- OPRF and buckets

# The fixed blind of a vector reaches noble's Blind through its `rng` argument: noble
# maps rng bytes r (48 of them, little-endian) to the scalar (r mod (n - 1)) + 1, so
# the bytes of blind - 1 give back exactly the vector's blind.
JS_VECTORS = """
(vectors) => {
  const P = window.ExposurePrivate;
  return vectors.map(([input, blind, evaluated]) => {
    const le = P.fromHex(blind);
    let scalar = 0n;
    for (let i = le.length - 1; i >= 0; i--) scalar = (scalar << 8n) | BigInt(le[i]);
    const rng = (n) => {
      const out = new Uint8Array(n);
      let rest = scalar - 1n;
      for (let i = 0; i < n; i++) { out[i] = Number(rest & 255n); rest >>= 8n; }
      return out;
    };
    const data = P.fromHex(input);
    const blinded = P.blind(data, rng);
    const output = evaluated === null ? null
      : P.toHex(P.finalize(data, blinded.blind, P.fromHex(evaluated)));
    return {blind: P.toHex(blinded.blind), blinded: P.toHex(blinded.blinded), output};
  });
}
"""


async def test_javascript_oprf_reproduces_the_rfc_9497_vectors(
    browser: Browser, base_url: str
) -> None:
    page, watch = await library_page(browser, base_url)
    vectors = [param.values for param in RFC9497_OPRF_VECTORS]
    got = await page.evaluate(JS_VECTORS, [[v[0], v[1], v[3]] for v in vectors])
    for (_, blind, blinded, _, output), result in zip(vectors, got, strict=True):
        assert result == {"blind": blind, "blinded": blinded, "output": output}
    watch.check()
    await page.context.close()


async def test_javascript_oprf_and_bucket_agree_with_the_python_side(
    browser: Browser, base_url: str, breach: Breach
) -> None:
    page, watch = await library_page(browser, base_url)
    # Real canonical keys of the member file, each with its own random blind.
    canonicals = sorted({key for member in breach.members()[:40] for key in _keys(member)})
    assert len(canonicals) >= 40
    sk = oprf.generate_private_key()
    cases = []
    for canonical in canonicals:
        data = canonical.encode()
        blind, blinded = oprf.blind(data)
        evaluated = oprf.blind_evaluate(sk, blinded)
        cases.append((data.hex(), blind.hex(), blinded.hex(), evaluated.hex(),
                      oprf.evaluate(sk, data).hex()))
    got = await page.evaluate(JS_VECTORS, [[c[0], c[1], c[3]] for c in cases])
    for (_, blind, blinded, _, output), result in zip(cases, got, strict=True):
        assert result == {"blind": blind, "blinded": blinded, "output": output}

    widths = [0, 1, 7, 8, 13, 20, 24, 31, 32]
    buckets = await page.evaluate(
        "([keys, widths]) => keys.map(k => widths.map(w => window.ExposurePrivate.bucketOf(k, w)))",
        [canonicals, widths])
    assert buckets == [[oprf.bucket_of(k, w) for w in widths] for k in canonicals]
    watch.check()
    await page.context.close()


# ------------------------------------------------------------------- normalisation

NIR_INPUTS = [
    # docs/design.md §3 reference vectors, valid then invalid.
    "2 95 10 99 126 111 93", "253072B07300470", "253072A07300443", "186022A21532523",
    "294037512000591", "253072b07300470",
    "295109912611199", "253072C07300443", "175039720123594", "185434501234556",
    "995109912611134",
    # Separators, 13 characters, and what must be refused.
    "2.95.10.99.126.111.93", "2-95-10-99-126-111-93", "2\u00a095\u202f10\u200799 126\u2013111 93",
    "2951099126111", "253072a073004", "1 86 02 2A 215 325", "", "   ", "2 95 10 99 126 111",
    "2951099126111931", "\uff12\uff19\uff15109912611193", "2951099126111 93x",
    "295109912611193\u00a0", "095109912611193", "595109912611193", "185134501234556",
    "185004501234556", "185204501234556", "185504501234556", "2A5109912611193",
    "1850945012345", "185099912345", "ß", "2ⅱ5109912611193",
]
DATE_INPUTS = [
    "1980-02-01", "01/02/1980", "01-02-1980", "01.02.1980", "1/2/1980", "1980-2-1",
    " 01/02/1980 ", "\u200901/02/1980\u3000", "\x1c01/02/1980", "\ufeff01/02/1980",
    "01/02/80", "1.2.80", "00/00/1980", "00/02/1980", "15/00/1980", "1980-00-15",
    "31/02/1980", "29/02/2000", "29/02/1900", "31/04/1999", "01/13/1980", "32/01/1980",
    "1879-12-31", "1880-01-01", "00/00/1880", "2024-06-15", "2024-06-16", "00/06/2024",
    "00/07/2024", "0000-01-01", "1980/02/01", "01/02.1980", "01/02/19800", "",
    "\u0661\u0669\u0668\u0660-\u0660\u0662-\u0660\u0661",
    "\uff10\uff11/\uff10\uff12/\uff11\uff19\uff18\uff10",
    "01 02 1980", "1980-02-01T00:00", "1e3", "today",
]
NAME_INPUTS = [
    # docs/design.md §3: these fold together...
    "Lætitia", "LAETITIA", "Œillet", "OEILLET", "Müller", "MULLER", "ß", "SS",
    "D'Artagnan", "d’artagnan", "DARTAGNAN", "D ARTAGNAN", "d‘artagnan", "d`artagnan",
    "Le Gall", "LE-GALL", "LEGALL", "Le\u2011Gall", "Le\u2014Gall", "Le.Gall",
    "Jean-Pierre", "Jean Pierre", "JEAN-PIERRE",
    # ...these are refused.
    "Jean2", "李", "Jean_Pierre", "J@n", "", "  ", "'-.", "Ⅻ",
    # Letters only Unicode data can fold.
    "Zoë", "Ğülşen", "Ørsted", "Łukasz", "Þórunn", "ẞ", "ŉ", "ǰ", "ﬁfi", "Ǆ", "ǅemal",
    "Đorđe", "Ŀlum", "Ðór", "İlker", "ı", "ſ", "Ａｌｉｃｅ", "Ⓐnne", "e\u0301", "E\u0345",
    "A\u034fB", "ℌilbert", "K\u0308", "Dž", "ﬀ", "ꭰ", "Ǻ", "Ȁ", "Ḁ", "A\u20ddB",
]

JS_FIELD = """
([kind, inputs, today]) => {
  const P = window.ExposurePrivate;
  const run = {
    nir: (v) => P.normalizeNir(v),
    birth_date: (v) => P.normalizeBirthDate(v, "birth_date", today),
    last_name: (v) => P.foldName(v),
  }[kind];
  return inputs.map((v) => {
    try { return ["ok", run(v)]; }
    catch (e) { if (e instanceof P.FieldError) return ["error", e.code]; throw e; }
  });
}
"""


def _python_field(kind: str, value: str) -> list[str]:
    try:
        if kind == "nir":
            return ["ok", normalize_nir(value)]
        if kind == "birth_date":
            return ["ok", normalize_birth_date(value, today=TODAY)]
        return ["ok", fold_name(value)]
    except IdentityError as exc:
        return ["error", exc.code]


def _today_js() -> list[int]:
    return [TODAY.year, TODAY.month, TODAY.day]


def _keys(member: Mapping[str, str]) -> list[str]:
    try:
        return exact_keys(canonical_keys(query_fields(member), today=TODAY))
    except QueryError:
        return []


@pytest.mark.parametrize(("kind", "inputs"), [
    ("nir", NIR_INPUTS), ("birth_date", DATE_INPUTS), ("last_name", NAME_INPUTS),
])
async def test_javascript_normalisation_agrees_on_the_reference_vectors(
    browser: Browser, base_url: str, kind: str, inputs: list[str]
) -> None:
    page, watch = await library_page(browser, base_url)
    got = await page.evaluate(JS_FIELD, [kind, inputs, _today_js()])
    expected = [_python_field(kind, value) for value in inputs]
    assert dict(zip(inputs, got, strict=True)) == dict(zip(inputs, expected, strict=True))
    # The vectors do exercise both outcomes.
    assert {outcome for outcome, _ in expected} == {"ok", "error"}
    watch.check()
    await page.context.close()


async def test_javascript_normalisation_agrees_on_every_code_point_and_digit(
    browser: Browser, base_url: str
) -> None:
    """Every code point Python's Unicode knows (planes 0-2), in a name; every Unicode
    decimal digit, in a date: the same folded name or error code on both sides."""
    page, watch = await library_page(browser, base_url)
    points = [cp for cp in range(0x30000)
              if unicodedata.category(chr(cp)) not in ("Cn", "Cs")]
    js_folds = await page.evaluate("""(points) => points.map((cp) => {
        const P = window.ExposurePrivate;
        try { return P.foldName("A" + String.fromCodePoint(cp) + "B"); }
        catch (e) { if (e instanceof P.FieldError) return "!" + e.code; throw e; }
    })""", points)
    mismatches = []
    for cp, js in zip(points, js_folds, strict=True):
        try:
            py = fold_name(f"A{chr(cp)}B")
        except IdentityError as exc:
            py = "!" + exc.code
        if py != js:
            mismatches.append((f"U+{cp:04X}", unicodedata.name(chr(cp), "?"), py, js))
    assert mismatches == []
    # isCombining sees only NFKD output, so only decomposed characters.
    decomposed = [cp for cp in points if unicodedata.normalize("NFD", chr(cp)) == chr(cp)]
    js_combining = await page.evaluate(
        "(points) => points.filter((cp) => window.ExposurePrivate.isCombining("
        "String.fromCodePoint(cp)))", decomposed)
    assert js_combining == [cp for cp in decomposed if unicodedata.combining(chr(cp))]

    digits = [chr(cp) for cp in points if unicodedata.category(chr(cp)) == "Nd"]
    assert len(digits) > 600
    dates = [f"19{d}{d}-0{d}-1{d}" for d in digits] + [f"1{d}/0{d}/19{d}{d}" for d in digits]
    got = await page.evaluate(JS_FIELD, ["birth_date", dates, _today_js()])
    assert got == [_python_field("birth_date", value) for value in dates]
    watch.check()
    await page.context.close()


async def test_javascript_match_keys_agree_on_every_member(
    browser: Browser, base_url: str, breach: Breach
) -> None:
    """canonical_keys (its strong and weak keys) on the whole synthetic member file
    (accents, separators, spaces in the NIR, DD/MM/YYYY dates, missing fields), on
    several given names in one field and on incomplete queries."""
    page, watch = await library_page(browser, base_url)
    queries = [query_fields(member) for member in breach.members()]
    queries += [{}, {"birth_date": "01/02/1980"}, {"last_name": "Martin"},
                {"first_name": "Léa", "birth_date": "01/02/1980"},
                {"last_name": "Martin", "birth_date": "01/02/1980"},
                {"nir": BAD_CHECKSUM_NIR, "last_name": "Martin", "first_name": "Léa",
                 "birth_date": "01/02/1980"},
                {"nir": "2 95 10 99 126 111 93"}, {"nir": "  ", "birth_date": " "},
                {"nir": 295109912611193, "birth_date": "01/02/1980"},  # type: ignore[dict-item]
                # Several given names, read as a record's are (docs/design.md §3).
                {"last_name": "Martin", "first_name": "Jean, Pierre", "birth_date": "01/02/1980"},
                {"last_name": "Martin", "first_name": "Jean Pierre\u00a0Marie",
                 "birth_date": "01/02/1980"},
                {"last_name": "Martin", "first_name": "isabe lla;Léa", "birth_date": "01/02/1980"},
                {"last_name": "Martin", "first_name": " , ", "birth_date": "01/02/1980"},
                {"last_name": "Martin", "first_name": "Jean,J3an", "birth_date": "01/02/1980"}]
    got = await page.evaluate("""([queries, today]) => queries.map((q) => {
        const P = window.ExposurePrivate;
        try { return P.parseQuery(q, today).map((k) => [k.strength, k.canonical, k.matched_on]); }
        catch (e) {
          if (e instanceof P.QueryError) return e.errors.map((f) => [f.field, f.code]);
          throw e;
        }
    })""", [queries, _today_js()])
    expected: list[Any] = []
    for query in queries:
        try:
            expected.append([[key_kind(k), k, list(MATCHED_ON[key_kind(k)])]
                             for k in exact_keys(canonical_keys(query, today=TODAY))])
        except QueryError as exc:
            expected.append([[e.field, e.code] for e in exc.errors])
    assert got == expected
    strengths = {key[0] for keys in expected for key in keys}
    assert {"strong", "weak", "birth_date", "nir"} <= strengths  # keys and errors both
    watch.check()
    await page.context.close()


# ----------------------------------------------------------------- the private check

class Recorder:
    """Every request the browser sends: method, URL, headers and body, as sent."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> None:
        self.requests.append(request)

    async def sent(self) -> list[dict[str, Any]]:
        return [{"method": r.method, "url": r.url, "headers": await r.all_headers(),
                 "body": r.post_data_buffer or b""} for r in self.requests]


def written_forms(member: Mapping[str, str]) -> set[str]:
    """The identifiers of `member` in every form we can think of, lower case: as typed,
    normalised, compacted, canonical; and those in hex, base64 and URL encoding."""
    forms: set[str] = set()
    nir, date = member.get("nir", ""), member.get("birth_date", "")
    if nir:
        full = normalize_nir(nir)
        forms |= {nir, full, full[:13], re.sub(r"\D", "", nir), " ".join(
            [full[0], full[1:3], full[3:5], full[5:7], full[7:10], full[10:13], full[13:]])}
    if date:
        iso = normalize_birth_date(date, today=TODAY)
        y, m, d = iso.split("-")
        forms |= {date, iso, f"{d}/{m}/{y}", f"{d}{m}{y}", f"{y}{m}{d}", f"{d}-{m}-{y}",
                  f"{d}.{m}.{y}"}
    for field in ("last_name", "first_name"):
        if member.get(field):
            forms |= {member[field], fold_name(member[field])}
    forms |= set(_keys(member))
    encoded = set()
    for form in forms:
        raw = form.encode()
        encoded |= {raw.hex(), base64.b64encode(raw).decode().rstrip("="),
                    base64.urlsafe_b64encode(raw).decode().rstrip("="), quote(form),
                    quote_plus(form), json.dumps(form)[1:-1]}
    return {form.lower() for form in forms | encoded if form}


def assert_nothing_identifying(sent: Iterable[Mapping[str, Any]],
                               people: Iterable[Mapping[str, str]]) -> None:
    needles = set().union(*(written_forms(p) for p in people))
    for request in sent:
        body: bytes = request["body"]
        headers = "\n".join(f"{k}: {v}" for k, v in request["headers"].items())
        for text in (request["url"], headers, body.decode("utf-8", "replace"),
                     body.decode("latin-1")):
            haystack = text.lower()
            for candidate in (haystack, unquote_plus(haystack)):
                # A bare any(): a failure names the request, never the identifier.
                assert not any(needle in candidate for needle in needles), \
                    f"{request['method']} {request['url'].split('?')[0]} carries an identifier"


def private_person(breach: Breach, want: Callable[[dict[str, str], dict[str, str]], bool],
                   fields: tuple[str, ...]) -> dict[str, str]:
    """A member to type in: every field present and valid, names of 5 letters or more
    that are not hex digits (so no random token or blinded element can contain one)."""
    def fits(member: dict[str, str], expected: dict[str, str]) -> bool:
        if not all(member.get(name) for name in fields) or not _keys(member):
            return False
        for name in ("last_name", "first_name"):
            folded = fold_name(member[name]) if member.get(name) else ""
            if name in fields and (len(folded) < 5 or re.fullmatch(r"[A-F]+", folded)):
                return False
        return want(member, expected)

    member = pick(breach, fits)
    return {name: member[name] for name in fields}


async def plain_verdict(base_url: str, fields: Mapping[str, str]) -> tuple[bool, str | None]:
    async with aiohttp.ClientSession() as session, session.post(
        base_url + "/v1/check", json=dict(fields)
    ) as response:
        assert response.status == 200
        verdict = await response.json()
    return verdict["found"], verdict["match"]


async def private_check(page: Page, lang: str, fields: Mapping[str, str]) -> str:
    """Type the fields, tick the private check, submit; the heading of the answer."""
    form = CATALOGUES[lang]["form"]
    for name in ("birth_date", "nir", "last_name", "first_name"):
        await page.get_by_label(form[name]["label"], exact=True).fill(fields.get(name, ""))
    await page.get_by_label(CATALOGUES[lang]["private"]["choice_label"]).check()
    await page.get_by_role("button", name=form["submit"], exact=True).click()
    answer = page.locator("#private-answer [data-outcome]:not([hidden]) h2")
    await expect(answer).to_be_visible()
    await expect(answer).to_be_focused()  # a screen reader starts at the answer
    return " ".join((await answer.inner_text()).split())


def heading_for(lang: str, found: bool, match: str | None) -> str:
    answer = CATALOGUES[lang]["answer"]
    return answer["title_not_found"] if not found else answer[f"title_{match}"]


@pytest.mark.parametrize(("lang", "locale"), [("fr", "fr-FR"), ("en", "en-GB")])
async def test_private_check_answers_like_the_plain_one_and_sends_no_identifier(
    browser: Browser, base_url: str, breach: Breach, tmp_path: Path, lang: str, locale: str
) -> None:
    t = CATALOGUES[lang]
    everything = ("nir", "birth_date", "last_name", "first_name")
    strong = private_person(breach, lambda m, e: e["match"] == "strong", ("nir", "birth_date"))
    weak = private_person(breach, lambda m, e: e["match"] == "weak"
                          and e["kind"] != "several_given_names",
                          ("last_name", "first_name", "birth_date"))
    both = private_person(breach, lambda m, e: e["match"] == "strong", everything)
    absent = private_person(breach, lambda m, e: e["in_breach"] == "false", everything)
    people = [strong, weak, both, absent]

    page, watch = await new_page(browser, base_url, locale=locale, viewport=PHONE)
    recorder = Recorder()
    page.context.on("request", recorder)
    await page.goto(base_url + "/")
    choice = page.get_by_label(t["private"]["choice_label"])
    await expect(choice).to_be_visible()
    await expect(choice).not_to_be_checked()  # the ordinary check stays the default
    await page.screenshot(path=tmp_path / f"{lang}-1-form-with-private-choice.png",
                          full_page=True)

    seen = []
    for step, person in enumerate(people, start=2):
        found, match = await plain_verdict(base_url, person)
        shown = await private_check(page, lang, person)
        assert shown == heading_for(lang, found, match)
        seen.append(match or "not_found")
        text = " ".join((await page.inner_text("#private-answer")).split())
        assert " ".join(t["private"]["scope"].split()) in text  # says what it cannot tell
        assert " ".join(t["advice"]["phishing_title"].split()) in text
        # What the person sees first (the answer, scrolled to by the focus), then all.
        await page.screenshot(path=tmp_path / f"{lang}-{step}-private-{seen[-1]}-view.png")
        await page.screenshot(path=tmp_path / f"{lang}-{step}-private-{seen[-1]}.png",
                              full_page=True)
    assert seen == ["strong", "weak", "strong", "not_found"]
    # The weak person's answer would have said so had the NIR been asked: not here.
    await expect(page.get_by_text(t["answer"]["weak_nir_missed"])).to_be_hidden()

    sent = await recorder.sent()
    assert_nothing_identifying(sent, people)
    # What did go out: pages and static files, the parameters, and one evaluation per
    # check, holding exactly {"items": [{"bucket", "blinded"}]}, a key per item.
    assert all(r["url"].startswith(base_url + "/") for r in sent)
    posts = [r for r in sent if r["method"] != "GET"]
    assert [(r["method"], r["url"]) for r in posts] == \
        [("POST", base_url + "/v1/private/evaluate")] * len(people)
    for request, person in zip(posts, people, strict=True):
        body = json.loads(request["body"])
        assert list(body) == ["items"] and len(body["items"]) == len(_keys(person))
        for item in body["items"]:
            assert set(item) == {"bucket", "blinded"} and isinstance(item["bucket"], int)
            assert re.fullmatch(r"[0-9a-f]{64}", item["blinded"])
        assert "cookie" not in request["headers"]  # the form's cookie stays home
    gets = {r["url"].split("?")[0] for r in sent if r["method"] == "GET"}
    assert base_url + "/v1/private/params" in gets
    assert gets <= {
        base_url + "/", base_url + "/v1/private/params", base_url + "/static/form.css",
        base_url + "/static/icon.svg", base_url + "/static/private.js",
        base_url + "/static/vendor/noble-oprf.js", base_url + "/favicon.ico",
    }
    watch.check()  # no CSP violation, no script error, nothing sent elsewhere

    # "Which breach, which data?": the ordinary check of the same fields, one click
    # away (this one does send them, as the ordinary check must).
    await page.get_by_role("button", name=t["private"]["ordinary"]).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(t["answer"]["title_not_found"])
    await page.get_by_role("link", name=t["answer"]["again"]).click()
    await private_check(page, lang, both)
    await page.get_by_role("button", name=t["private"]["ordinary"]).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(t["answer"]["title_strong"])
    await expect(page.locator("section.breach h2")).not_to_have_count(0)
    await page.screenshot(path=tmp_path / f"{lang}-6-ordinary-after-private.png", full_page=True)
    watch.check()
    await page.context.close()


async def test_private_check_reports_field_errors_inline_and_sends_nothing(
    browser: Browser, base_url: str, tmp_path: Path
) -> None:
    t = CATALOGUES["fr"]
    page, watch = await new_page(browser, base_url, locale="fr-FR", viewport=PHONE)
    await page.goto(base_url + "/")
    await expect(page.get_by_label(t["private"]["choice_label"])).to_be_visible()
    recorder = Recorder()
    page.context.on("request", recorder)
    form = t["form"]
    await page.get_by_label(form["birth_date"]["label"], exact=True).fill("12/03/94")
    await page.get_by_label(form["nir"]["label"], exact=True).fill(BAD_CHECKSUM_NIR)
    await page.get_by_label(form["last_name"]["label"], exact=True).fill("Dupont")
    await page.get_by_label(t["private"]["choice_label"]).check()
    await page.get_by_role("button", name=form["submit"], exact=True).click()

    # As the server words and ties them: the summary takes the focus, each field says.
    summary = page.locator(".error-summary")
    await expect(summary).to_be_focused()
    messages = [t["errors"]["birth_date"]["two_digit_year"],
                t["errors"]["nir"]["invalid_checksum"]]
    await expect(summary.locator("a")).to_have_text(messages)
    nir = page.get_by_label(form["nir"]["label"], exact=True)
    await expect(nir).to_have_attribute("aria-invalid", "true")
    await expect(nir).to_have_accessible_description(" ".join(
        f"{form['nir']['hint']} {form['error_prefix']} {messages[1]}".split()))
    assert (await page.title()).startswith(t["site"]["error_title_prefix"])
    await expect(page.locator("#private-answer")).to_be_hidden()
    await page.screenshot(path=tmp_path / "private-invalid.png", full_page=True)
    assert recorder.requests == []  # refused locally: nothing went out
    # The server, asked the ordinary way, says the same.
    js_field = await page.locator("#nir").evaluate("e => e.closest('.field').outerHTML")
    await page.get_by_label(t["private"]["choice_label"]).uncheck()
    await page.get_by_role("button", name=form["submit"], exact=True).click()
    await expect(page.locator(".error-summary a")).to_have_text(messages)
    server_field = await page.locator("#nir").evaluate("e => e.closest('.field').outerHTML")

    def shape(html: str) -> str:
        # Without the typed values, and without the empty style="" Playwright's typing
        # leaves on an input (private.js sets no style).
        html = re.sub(r'\s(value|style)="[^"]*"', "", html)
        return re.sub(r"\s+", " ", html).replace("> <", "><")

    assert shape(js_field) == shape(server_field)
    # Fixing the fields clears the errors of a private check.
    await page.get_by_label(form["birth_date"]["label"], exact=True).fill("12/03/1994")
    await page.get_by_label(form["nir"]["label"], exact=True).fill("")
    await page.get_by_label(form["first_name"]["label"], exact=True).fill("Zébulon")
    await page.get_by_label(t["private"]["choice_label"]).check()
    await page.get_by_role("button", name=form["submit"], exact=True).click()
    await expect(page.locator("#private-answer [data-outcome]:not([hidden]) h2")).to_have_text(
        t["answer"]["title_not_found"])
    await expect(page.locator(".error-summary")).to_have_count(0)
    await expect(page.locator(".error-message")).to_have_count(0)
    await expect(nir).not_to_have_attribute("aria-invalid", "true")
    assert not (await page.title()).startswith(t["site"]["error_title_prefix"])
    watch.check()
    await page.context.close()


async def test_private_check_says_when_it_is_rate_limited_or_fails(
    browser: Browser, aiohttp_server: Callable[..., Any],
    make_settings: Callable[..., Settings], private_index: tuple[Path, Path], tmp_path: Path,
) -> None:
    index_dir, key_file = private_index
    settings = make_settings(index_dir=index_dir, oprf_key_file=key_file,
                             anon_rate=1.0, anon_burst=2)
    server = await aiohttp_server(create_app(settings))
    base_url = str(server.make_url("")).rstrip("/")
    t = CATALOGUES["en"]
    page, _ = await new_page(browser, base_url, locale="en-GB", viewport=PHONE)
    await page.goto(base_url + "/")
    names = {"birth_date": "01/01/1950", "last_name": "Xyzzy", "first_name": "Plugh"}
    assert await private_check(page, "en", names) == t["answer"]["title_not_found"]
    # One unit left, or none: within a few more checks the service says 429.
    for _ in range(3):
        shown = await private_check(page, "en", names)
        if shown != t["answer"]["title_not_found"]:
            break
    assert shown == t["http"]["429"]["title"]
    retry = page.locator('#private-answer [data-when="retry"]')
    await expect(retry).to_be_visible()
    texts = t["http"]["429"]
    many = re.escape(texts["retry_many"]).replace(re.escape("{seconds}"), r"\d+")
    assert re.fullmatch(f"{many}|{re.escape(texts['retry_one'])}", await retry.inner_text())
    await page.screenshot(path=tmp_path / "private-429.png", full_page=True)

    # A service that fails: said plainly, with the ordinary check offered.
    await page.route("**/v1/private/evaluate", lambda route: route.fulfill(status=500))
    assert await private_check(page, "en", names) == t["private"]["failed_title"]
    await expect(page.get_by_role("button", name=t["private"]["ordinary"])).to_be_visible()
    await page.context.close()


async def test_without_javascript_the_ordinary_form_works(
    browser: Browser, base_url: str, breach: Breach, tmp_path: Path
) -> None:
    t = CATALOGUES["fr"]
    person = private_person(breach, lambda m, e: e["match"] == "strong", ("nir", "birth_date"))
    page, watch = await new_page(browser, base_url, locale="fr-FR", viewport=PHONE,
                                 java_script_enabled=False)
    recorder = Recorder()
    page.context.on("request", recorder)
    await page.goto(base_url + "/")
    await expect(page.get_by_label(t["private"]["choice_label"])).to_be_hidden()
    await page.screenshot(path=tmp_path / "nojs-form.png", full_page=True)
    for name, value in person.items():
        await page.get_by_label(t["form"][name]["label"], exact=True).fill(value)
    await page.get_by_role("button", name=t["form"]["submit"], exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(t["answer"]["title_strong"])
    await expect(page.locator("section.breach h2")).not_to_have_count(0)
    await page.screenshot(path=tmp_path / "nojs-found.png", full_page=True)
    assert not any("/v1/private/" in r.url for r in recorder.requests)
    posts = [r for r in recorder.requests if r.method == "POST"]
    assert [r.url for r in posts] == [base_url + "/?lang=fr"]
    watch.check()
    await page.context.close()


async def test_form_page_security_and_accessibility_with_the_private_check(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings],
    private_index: tuple[Path, Path], browser: Browser, base_url: str, breach: Breach,
    tmp_path: Path,
) -> None:
    # The same CSP as without it: pure JavaScript needs no 'wasm-unsafe-eval'.
    index_dir, key_file = private_index
    client = await aiohttp_client(create_app(make_settings(index_dir=index_dir,
                                                           oprf_key_file=key_file)))
    response = await client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe" not in csp and "wasm" not in csp
    html = await response.text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert [re.search(r'src="([^"?]+)', attrs)[1] for attrs, _ in scripts] == [  # type: ignore[index]
        "/static/vendor/noble-oprf.js", "/static/private.js"]
    assert all(body == "" and " defer" in attrs for attrs, body in scripts)
    vendored = await client.get("/static/vendor/noble-oprf.js")
    assert vendored.status == 200
    head = (await vendored.text())[:400]
    assert "@noble/curves 2.4.0" in head and "@noble/hashes 2.4.0" in head
    assert "MIT" in (await vendored.text())[:2000]

    # axe-core on the form with the choice shown and on each private answer.
    person = private_person(breach, lambda m, e: e["match"] == "strong", ("nir", "birth_date"))
    violations: list[dict[str, Any]] = []
    page, _ = await new_page(browser, base_url, locale="fr-FR", viewport=PHONE, bypass_csp=True)
    await page.goto(base_url + "/")
    await expect(page.get_by_label(CATALOGUES["fr"]["private"]["choice_label"])).to_be_visible()
    violations += await axe(page, tmp_path, "private-form")
    await private_check(page, "fr", person)
    violations += await axe(page, tmp_path, "private-strong")
    await private_check(page, "fr", {"birth_date": "01/01/1950", "last_name": "Xyzzy",
                                     "first_name": "Plugh"})
    violations += await axe(page, tmp_path, "private-not-found")
    await page.screenshot(path=tmp_path / "axe-private-not-found.png", full_page=True)
    print("axe-core violations:", json.dumps(violations, indent=1))
    assert [v for v in violations if v["impact"] in ("serious", "critical")] == []
    await page.context.close()
