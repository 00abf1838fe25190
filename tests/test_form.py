"""The web form for individuals (issue 4, docs/design.md §5 `GET /` and `POST /`).

Through the real app and a real index (`client`, `breach`): languages, headers,
anti-CSRF, the shared rate limit, inline field errors, and the answer pages checked
against the generator's ground truth and against the JSON API's own verdict.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from html.parser import HTMLParser
from typing import Any

import aiohttp
import pytest
from conftest import Breach

from indexer.core.identity import IdentityError, fold_name, normalize_birth_date, normalize_nir
from indexer.core.records import DATA_CLASSES
from service.app import create_app
from service.views.form import CSRF_COOKIE, CSRF_FIELD, load_catalogues

CATALOGUES = load_catalogues()
FR, EN = CATALOGUES["fr"], CATALOGUES["en"]
# Every error code that indexer/core/identity.py and indexer/core/matchkeys.py can raise.
ERROR_CODES = (
    "required", "invalid_characters", "invalid_length", "invalid_sex_digit", "invalid_format",
    "invalid_month", "invalid_checksum", "two_digit_year", "invalid_date", "out_of_range",
    "incomplete_key", "invalid_type",
)
BAD_CHECKSUM_NIR = "2 95 10 99 126 111 99"  # docs/design.md §3: invalid (checksum)


# --- helpers ---------------------------------------------------------------------------

class Page(HTMLParser):
    """Just enough of the DOM: every tag with its attributes, and text by element id."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.texts: dict[str, list[str]] = {}
        self._open: list[tuple[str, str | None]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.tags.append((tag, attributes))
        if tag not in self.VOID:
            element_id = attributes.get("id")
            self._open.append((tag, element_id))
            if element_id:
                self.texts[element_id] = []

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            open_tag, _ = self._open.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, element_id in self._open:
            if element_id:
                self.texts[element_id].append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags
                if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    def one(self, tag: str, **attrs: str) -> dict[str, str]:
        found = self.find(tag, **attrs)
        assert len(found) == 1, (tag, attrs, found)
        return found[0]

    def text(self, element_id: str) -> str:
        return " ".join("".join(self.texts[element_id]).split())


def words(text: str) -> str:
    """Whitespace collapsed, so catalogue texts can be looked for in rendered HTML."""
    return " ".join(text.split())


def html_text(html: str) -> str:
    import html as html_module
    return words(html_module.unescape(html))


def flatten(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in table.items():
        if isinstance(value, Mapping):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


async def form_token(client: Any, path: str = "/") -> str:
    response = await client.get(path)
    assert response.status == 200
    return Page(await response.text()).one("input", name=CSRF_FIELD)["value"]


async def submit(client: Any, fields: Mapping[str, str], *, lang: str = "fr",
                 token: str | None = None) -> tuple[aiohttp.ClientResponse, str]:
    if token is None:
        token = await form_token(client, f"/?lang={lang}")
    response = await client.post(f"/?lang={lang}", data={**fields, CSRF_FIELD: token})
    return response, await response.text()


def pick(breach: Breach, want: Callable[[dict[str, str], dict[str, str]], bool]
         ) -> dict[str, str]:
    """A member of the synthetic member file whose names cannot be mistaken for page text."""
    expected = breach.expected()
    texts = [text for catalogue in (FR, EN) for _, value in flatten(catalogue)
             for text in (value if isinstance(value, list) else [value])]
    static = {fold_name(w) for text in texts for w in re.findall(r"[^\W\d_]+", text)}
    for member in breach.members():
        try:
            names = {fold_name(member["last_name"]), fold_name(member["first_name"])}
        except IdentityError:
            continue
        if want(member, expected[member["ref"]]) and not names & static:
            return member
    raise AssertionError("no such member in the synthetic breach")


def assert_private_page(response: aiohttp.ClientResponse) -> None:
    assert response.headers["Cache-Control"] == "no-store"
    assert response.content_type == "text/html"


# --- GET: languages, fields, headers ----------------------------------------------------

async def test_form_is_french_by_default(client: Any) -> None:
    response = await client.get("/")
    assert response.status == 200
    html = await response.text()
    page = Page(html)
    assert page.one("html")["lang"] == "fr"
    assert response.headers["Content-Language"] == "fr"
    assert len(page.find("h1")) == 1
    assert words(FR["form"]["title"]) in html_text(html)
    for landmark in ("header", "main", "footer", "nav"):
        assert page.find(landmark), landmark
    switch = page.one("a", hreflang="en")
    assert switch["href"] == "/?lang=en" and switch["lang"] == "en"


@pytest.mark.parametrize(("path", "accept", "lang"), [
    ("/?lang=en", "", "en"),
    ("/", "en-GB,en;q=0.9", "en"),
    ("/", "de-DE, en;q=0.5", "en"),
    ("/", "fr;q=0.4, en;q=0.8", "en"),
    ("/", "en-US,fr;q=0.9", "en"),
    ("/", "fr-FR,fr;q=0.9,en;q=0.8", "fr"),
    ("/", "de, it;q=0.5", "fr"),
    ("/", "en;q=nonsense", "fr"),
    ("/?lang=fr", "en", "fr"),
    ("/?lang=xx", "en", "en"),
])
async def test_language_from_query_or_accept_language(
    client: Any, path: str, accept: str, lang: str
) -> None:
    response = await client.get(path, headers={"Accept-Language": accept} if accept else {})
    html = await response.text()
    page = Page(html)
    assert page.one("html")["lang"] == lang
    assert words(CATALOGUES[lang]["form"]["title"]) in html_text(html)
    # The form posts back in the same language; no identifier ever goes in a URL.
    form = page.one("form")
    assert form["method"] == "post" and form["action"] == f"/?lang={lang}"


async def test_english_form(client: Any) -> None:
    html = await (await client.get("/?lang=en")).text()
    page = Page(html)
    text = html_text(html)
    assert page.one("html")["lang"] == "en"
    for key in ("title", "lead", "how", "submit"):
        assert words(EN["form"][key]) in text
    assert page.one("a", hreflang="fr")["href"] == "/?lang=fr"


@pytest.mark.parametrize("lang", ["fr", "en"])
async def test_every_field_has_label_hint_and_autocomplete(client: Any, lang: str) -> None:
    page = Page(await (await client.get(f"/?lang={lang}")).text())
    autocomplete = {"nir": "off", "birth_date": "bday", "last_name": "family-name",
                    "first_name": "given-name"}
    for name, token in autocomplete.items():
        field = page.one("input", name=name)
        assert field["id"] == name and field["type"] == "text"
        assert field["autocomplete"] == token
        assert field["spellcheck"] == "false"  # no cloud spell checker sees identifiers
        assert field["aria-describedby"] == f"{name}-hint"
        assert "aria-invalid" not in field
        page.one("label", **{"for": name})
        assert page.text(f"{name}-hint") == words(CATALOGUES[lang]["form"][name]["hint"])
    # Where to find the NIR: carte Vitale, attestation de droits.
    where = " ".join(CATALOGUES[lang]["form"]["nir"]["where"])
    assert "carte Vitale" in where and "attestation de droits" in where


async def test_security_headers_on_the_form(client: Any) -> None:
    response = await client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert_private_page(response)
    html = await response.text()
    # No inline script or style (a script is only ever a `src` of our own), nothing
    # from another origin.
    assert not re.search(r"<script(?![^>]*\bsrc=\"/)", html)
    assert "style=" not in html and "<style" not in html
    page = Page(html)
    for tag, attr in (("link", "href"), ("img", "src"), ("script", "src")):
        for element in page.find(tag):
            assert element[attr].startswith("/static/"), element


async def test_static_files_are_served_with_security_headers(client: Any) -> None:
    page = Page(await (await client.get("/")).text())
    stylesheet = page.one("link", rel="stylesheet")["href"]
    response = await client.get(stylesheet)
    assert response.status == 200 and response.content_type == "text/css"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "url(" not in await response.text()  # no font or image from anywhere


# --- anti-CSRF -------------------------------------------------------------------------

async def test_csrf_cookie_is_strict_httponly_and_matches_the_field(client: Any) -> None:
    response = await client.get("/")
    cookie = response.cookies[CSRF_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["max-age"] and not cookie["expires"]  # a session cookie
    token = Page(await response.text()).one("input", name=CSRF_FIELD)["value"]
    assert cookie.value == token and len(token) >= 43
    # The browser keeps its token: a second page view does not replace it.
    again = await client.get("/")
    assert CSRF_COOKIE not in again.cookies
    assert Page(await again.text()).one("input", name=CSRF_FIELD)["value"] == token


@pytest.mark.parametrize(("trusted", "proto", "secure"), [
    ((), "https", False),  # a forged X-Forwarded-Proto from anyone is ignored
    (("127.0.0.0/8",), "https", True),  # TLS ended at our trusted proxy
    (("127.0.0.0/8",), "http", False),
])
async def test_csrf_cookie_is_secure_behind_a_trusted_tls_proxy(
    aiohttp_client: Any, make_settings: Callable[..., Any], trusted: tuple[str, ...],
    proto: str, secure: bool,
) -> None:
    import ipaddress

    settings = make_settings(
        trusted_proxies=tuple(ipaddress.ip_network(cidr) for cidr in trusted))
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/", headers={"X-Forwarded-Proto": proto})
    assert bool(response.cookies[CSRF_COOKIE]["secure"]) is secure


async def test_tokens_differ_between_browsers(client: Any) -> None:
    first = await form_token(client)
    client.session.cookie_jar.clear()
    assert await form_token(client) != first


@pytest.mark.parametrize("case", ["no cookie", "no field", "wrong field", "empty field"])
async def test_missing_or_wrong_csrf_token_is_refused(client: Any, case: str) -> None:
    token = await form_token(client)
    fields = {"nir": "294037512000591", "birth_date": "12/03/1994"}
    if case == "no cookie":
        client.session.cookie_jar.clear()
        fields[CSRF_FIELD] = token
    elif case == "wrong field":
        fields[CSRF_FIELD] = token[:-1] + ("A" if token[-1] != "A" else "B")
    elif case == "empty field":
        fields[CSRF_FIELD] = ""
    response = await client.post("/", data=fields)
    assert response.status == 403
    assert_private_page(response)
    html = await response.text()
    assert words(FR["http"]["403"]["title"]) in html_text(html)
    assert "294037512000591" not in html


# --- POST: answers ---------------------------------------------------------------------

async def api_verdict(client: Any, fields: Mapping[str, str]) -> dict[str, Any]:
    response = await client.post("/v1/check", json=dict(fields))
    assert response.status == 200
    verdict: dict[str, Any] = await response.json()
    return verdict


def assert_sources_shown(html: str, verdict: Mapping[str, Any], lang: str) -> None:
    text = html_text(html)
    page = Page(html)
    catalogue = CATALOGUES[lang]
    headings = [page.text(a["id"]) for a in page.find("h2")
                if a.get("id", "").startswith("breach-")]
    assert headings == [s["title"] for s in verdict["sources"]]
    for source in verdict["sources"]:
        for data_class in source["exposed"]:
            assert words(catalogue["classes"][data_class]) in text
    missing = set(DATA_CLASSES) - {c for s in verdict["sources"] for c in s["exposed"]}
    for data_class in missing:
        assert words(catalogue["classes"][data_class]) not in text


def assert_advice(html: str, lang: str) -> None:
    text = html_text(html)
    advice = CATALOGUES[lang]["advice"]
    for key in ("title", "phishing_title", "phishing", "never_title", "never", "victim"):
        assert words(advice[key]) in text
    external = [a for a in Page(html).find("a") if a["href"].startswith("http")]
    hosts = {re.sub(r"^https://([^/]+)/.*$", r"\1", a["href"]) for a in external}
    assert {"www.cybermalveillance.gouv.fr", "www.pre-plainte-en-ligne.gouv.fr"} <= hosts
    assert any(host.endswith("cnil.fr") for host in hosts)
    for link in external:
        assert link["href"].startswith("https://")
        assert {"noreferrer", "noopener"} <= set(link["rel"].split())


def assert_no_identifier(html: str, member: Mapping[str, str]) -> None:
    """Neither what was typed nor its normal form appears anywhere on the page."""
    text = html_text(html)
    page_words = {fold_name(w) for w in re.findall(r"[^\W\d_]+", text)}
    if member["nir"]:
        compact = normalize_nir(member["nir"])
        for value in (member["nir"], compact, compact[:13], " ".join(compact)):
            assert value not in html and value not in text
    iso = normalize_birth_date(member["birth_date"])
    year, month, day = iso.split("-")
    for value in (member["birth_date"], iso, f"{day}/{month}/{year}", f"{day}.{month}.{year}"):
        assert value not in html and value not in text
    for name in ("last_name", "first_name"):
        assert member[name] not in html and member[name] not in text
        assert re.search(rf"\b{re.escape(member[name])}\b", text, re.IGNORECASE) is None
        assert fold_name(member[name]) not in page_words


@pytest.mark.parametrize("lang", ["fr", "en"])
async def test_strong_match_by_nir_and_birth_date(client: Any, breach: Breach, lang: str) -> None:
    member = pick(breach, lambda m, e: e["match"] == "strong" and bool(m["nir"]))
    fields = {"nir": member["nir"], "birth_date": member["birth_date"]}
    response, html = await submit(client, fields, lang=lang)
    assert response.status == 200
    assert_private_page(response)
    catalogue = CATALOGUES[lang]
    page = Page(html)
    assert len(page.find("h1")) == 1
    assert page.one("html")["lang"] == lang
    assert words(catalogue["answer"]["title_strong"]) in html_text(html)
    assert words(catalogue["answer"]["lead_strong"]) in html_text(html)
    verdict = await api_verdict(client, fields)
    assert verdict["match"] == "strong"
    assert {s["id"] for s in verdict["sources"]} == set(
        breach.expected()[member["ref"]]["sources"].split("|"))
    assert_sources_shown(html, verdict, lang)
    assert_advice(html, lang)
    assert_no_identifier(html, member)
    # No form on the answer page: nothing could carry the values back.
    assert not page.find("input")


async def test_answer_page_never_shows_any_typed_value(client: Any, breach: Breach) -> None:
    member = pick(breach, lambda m, e: e["match"] == "strong" and bool(m["nir"]))
    fields = {k: member[k] for k in ("nir", "birth_date", "last_name", "first_name")}
    response, html = await submit(client, fields)
    assert response.status == 200
    assert words(FR["answer"]["title_strong"]) in html_text(html)
    assert_no_identifier(html, member)


@pytest.mark.parametrize("lang", ["fr", "en"])
async def test_weak_match_by_names_says_it_may_be_someone_else(
    client: Any, breach: Breach, lang: str
) -> None:
    member = pick(breach, lambda m, e: e["match"] == "weak"
                  and e["kind"] != "several_given_names")
    fields = {k: member[k] for k in ("last_name", "first_name", "birth_date")}
    response, html = await submit(client, fields, lang=lang)
    assert response.status == 200
    assert_private_page(response)
    text = html_text(html)
    answer = CATALOGUES[lang]["answer"]
    assert words(answer["title_weak"]) in text and words(answer["lead_weak"]) in text
    assert words(answer["title_strong"]) not in text
    assert words(answer["matched_weak"]) in text
    verdict = await api_verdict(client, fields)
    assert verdict["match"] == "weak"
    assert_sources_shown(html, verdict, lang)
    assert_advice(html, lang)
    assert_no_identifier(html, member)


@pytest.mark.parametrize("lang", ["fr", "en"])
async def test_not_found_says_what_it_does_not_know(
    client: Any, breach: Breach, lang: str
) -> None:
    member = pick(breach, lambda m, e: e["in_breach"] == "false" and bool(m["nir"]))
    fields = {"nir": member["nir"], "birth_date": member["birth_date"]}
    response, html = await submit(client, fields, lang=lang)
    assert response.status == 200
    assert_private_page(response)
    text = html_text(html)
    answer = CATALOGUES[lang]["answer"]
    assert words(answer["title_not_found"]) in text
    for limit in answer["limits"]:
        assert words(limit) in text
    assert words(answer["tip_nir_only"]) in text
    assert not [a for a in Page(html).find("h2") if a.get("id", "").startswith("breach-")]
    assert_advice(html, lang)
    assert_no_identifier(html, member)


async def test_lookups_are_counted_without_identifiers(client: Any, breach: Breach) -> None:
    member = pick(breach, lambda m, e: e["in_breach"] == "false" and bool(m["nir"]))
    await submit(client, {"nir": member["nir"], "birth_date": member["birth_date"]})
    metrics = await (await client.get("/metrics")).text()
    assert 'exposure_lookups_total{kind="form",outcome="not_found"} 1.0' in metrics
    assert re.sub(r"\D", "", member["nir"])[:13] not in re.sub(r"\D", "", metrics)


# --- POST: field errors ----------------------------------------------------------------

@pytest.mark.parametrize("lang", ["fr", "en"])
async def test_invalid_nir_is_reported_inline_and_kept(client: Any, lang: str) -> None:
    fields = {"nir": BAD_CHECKSUM_NIR, "birth_date": "12/03/1994"}
    response, html = await submit(client, fields, lang=lang)
    assert response.status == 422
    assert_private_page(response)
    page = Page(html)
    catalogue = CATALOGUES[lang]
    nir = page.one("input", name="nir")
    assert nir["aria-invalid"] == "true"
    assert nir["aria-describedby"].split() == ["nir-hint", "nir-error"]
    message = page.text("nir-error")
    assert words(catalogue["errors"]["nir"]["invalid_checksum"]) in message
    # The typed values stay in the form to be fixed ...
    assert nir["value"] == BAD_CHECKSUM_NIR
    assert page.one("input", name="birth_date")["value"] == "12/03/1994"
    assert "aria-invalid" not in page.one("input", name="birth_date")
    # ... but no message quotes them: the value is in the field and nowhere else.
    assert "126 111 99" not in message and "12611199" not in re.sub(r"\D", "", message)
    assert html.count(BAD_CHECKSUM_NIR) == 1
    # The error summary links to the field; the title says there is an error.
    summary = page.one("section", **{"class": "error-summary"})
    assert "autofocus" in summary
    assert page.one("a", href="#nir")
    assert re.search(r"<title>\s*" + re.escape(catalogue["site"]["error_title_prefix"]), html)


@pytest.mark.parametrize(("fields", "field", "code"), [
    ({"nir": "1 85 05 78 006 084 ?", "birth_date": "01/05/1985"}, "nir", "invalid_characters"),
    ({"nir": "18505", "birth_date": "01/05/1985"}, "nir", "invalid_length"),
    ({"nir": "995109912611134", "birth_date": "01/05/1985"}, "nir", "invalid_sex_digit"),
    ({"nir": "253072C07300443", "birth_date": "01/05/1985"}, "nir", "invalid_format"),
    ({"nir": "185434501234556", "birth_date": "01/05/1985"}, "nir", "invalid_month"),
    ({"nir": "295109912611199", "birth_date": "01/05/1985"}, "nir", "invalid_checksum"),
    ({"birth_date": "01/05/1985"}, "nir", "incomplete_key"),
    ({"nir": "294037512000591"}, "birth_date", "required"),
    ({"nir": "294037512000591", "birth_date": "le 12 mars"}, "birth_date", "invalid_format"),
    ({"nir": "294037512000591", "birth_date": "12/03/94"}, "birth_date", "two_digit_year"),
    ({"nir": "294037512000591", "birth_date": "31/02/1994"}, "birth_date", "invalid_date"),
    ({"nir": "294037512000591", "birth_date": "12/03/1850"}, "birth_date", "out_of_range"),
    ({"last_name": "Dupont3", "first_name": "Léa", "birth_date": "12/03/1994"},
     "last_name", "invalid_characters"),
    ({"last_name": "Dupont", "birth_date": "12/03/1994"}, "first_name", "required"),
    ({"first_name": "Léa", "birth_date": "12/03/1994"}, "last_name", "required"),
    ({"last_name": "Dupont", "first_name": "L3a", "birth_date": "12/03/1994"},
     "first_name", "invalid_characters"),
])
async def test_each_error_code_has_its_own_message(
    client: Any, fields: dict[str, str], field: str, code: str
) -> None:
    response, html = await submit(client, fields)
    assert response.status == 422
    page = Page(html)
    assert page.one("input", name=field)["aria-invalid"] == "true"
    assert page.text(f"{field}-error").endswith(words(FR["errors"][field][code]))
    for name, value in fields.items():
        assert page.one("input", name=name)["value"] == value


async def test_a_file_upload_is_not_a_value(client: Any) -> None:
    token = await form_token(client)
    data = aiohttp.FormData()
    data.add_field(CSRF_FIELD, token)
    data.add_field("nir", b"294037512000591", filename="nir.txt", content_type="text/plain")
    data.add_field("birth_date", "12/03/1994")
    response = await client.post("/", data=data)
    assert response.status == 422
    page = Page(await response.text())
    assert page.text("nir-error").endswith(words(FR["errors"]["nir"]["invalid_type"]))
    assert page.one("input", name="nir")["value"] == ""


async def test_empty_form_asks_for_a_date_and_a_key_and_markup_is_escaped(client: Any) -> None:
    response, html = await submit(client, {"last_name": "<script>alert(1)</script>",
                                           "first_name": '"><b>x'}, lang="en")
    assert response.status == 422
    assert "<script>alert" not in html and "<b>x" not in html
    page = Page(html)
    assert page.one("input", name="last_name")["value"] == "<script>alert(1)</script>"
    assert page.one("input", name="first_name")["value"] == '"><b>x'
    summary = [a["href"] for a in page.find("a") if a["href"].startswith("#")][1:]  # skip link
    assert summary == ["#last_name", "#first_name"]

    response, html = await submit(client, {}, lang="en")
    assert response.status == 422
    page = Page(html)
    assert page.text("birth_date-error").endswith(EN["errors"]["birth_date"]["required"])
    assert page.text("nir-error").endswith(EN["errors"]["nir"]["incomplete_key"])


async def test_body_too_large_gets_a_page(client: Any) -> None:
    token = await form_token(client)
    response = await client.post("/", data={CSRF_FIELD: token, "nir": "1" * 20_000})
    assert response.status == 413
    assert_private_page(response)
    assert words(FR["http"]["413"]["title"]) in html_text(await response.text())


# --- the rate limit shared with the anonymous API --------------------------------------

async def test_rate_limit_gives_a_readable_page(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    client = await aiohttp_client(create_app(make_settings(anon_rate=1, anon_burst=2)))
    token = await form_token(client, "/?lang=en")
    fields = {"nir": "294037512000591", "birth_date": "12/03/1994"}
    first, _ = await submit(client, fields, lang="en", token=token)
    assert first.status == 200
    # A refused form post costs a unit too (docs/design.md §5: whatever its outcome).
    refused = await client.post("/?lang=en", data=fields)
    assert refused.status == 403
    response, html = await submit(client, fields, lang="en", token=token)
    assert response.status == 429
    assert_private_page(response)
    retry = int(response.headers["Retry-After"])
    assert retry >= 1
    text = html_text(html)
    assert words(EN["http"]["429"]["title"]) in text
    assert words(EN["http"]["429"]["retry_many"].format(seconds=retry)) in text
    assert Page(html).one("html")["lang"] == "en"
    assert "294037512000591" not in html
    # The same per-address budget as the anonymous JSON API.
    api = await client.post("/v1/check", json=fields)
    assert api.status == 429
    # Looking at the form is not a lookup: it stays available.
    assert (await client.get("/")).status == 200


# --- catalogues ------------------------------------------------------------------------

def test_catalogues_have_the_same_keys() -> None:
    fr, en = dict(flatten(FR)), dict(flatten(EN))
    assert fr.keys() == en.keys()
    for key, value in fr.items():
        assert type(value) is type(en[key]), key
        if isinstance(value, list):
            assert len(value) == len(en[key]), key
        if isinstance(value, str):
            assert re.findall(r"{\w+}", value) == re.findall(r"{\w+}", en[key]), key
            assert "<" not in value and "<" not in en[key], key  # no markup in texts


def test_catalogues_cover_data_classes_and_error_codes() -> None:
    for catalogue in (FR, EN):
        assert set(catalogue["classes"]) == set(DATA_CLASSES)
        assert len(catalogue["dates"]["months"]) == 12
        covered = {code for field in ("nir", "birth_date", "last_name", "first_name")
                   for code in catalogue["errors"][field]}
        assert covered == set(ERROR_CODES)
        assert catalogue["meta"]["code"] in ("fr", "en")
