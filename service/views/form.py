"""The web form for individuals: `GET /` shows it, `POST /` answers it (docs/design.md §5).

Server-rendered with aiohttp-jinja2 (autoescaped), French by default, English with
`?lang=en` or `Accept-Language`. Every text comes from one catalogue per language
(`service/i18n/<lang>.toml`); templates hold structure only. No JavaScript is needed
and nothing is loaded from anywhere but this service.

Where the service offers private lookups (docs/design.md §7), the form page also loads two
scripts of its own, `static/vendor/noble-oprf.js` and `static/private.js`: progressive
enhancement that offers a private check, normalised, blinded and looked up in the
browser so that the service never sees the identifiers. Without JavaScript the form is
exactly the ordinary one. The texts those scripts need come from the same catalogue,
as a JSON `data-texts` attribute (no inline script: the CSP forbids it).

What it must never do: put an identifier in a URL, a log, a cookie or an answer
page. The typed values go back into the form only when the form is shown again so
that the person can fix an error; every page is `Cache-Control: no-store`.

Anti-CSRF is a double submit: a random token in a `SameSite=Strict; HttpOnly`
cookie and the same token in a hidden field, compared in constant time. It needs no
server secret, so any worker process can check a token another one issued.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, cast

import aiohttp_jinja2
import jinja2
import orjson
from aiohttp import web

from indexer.core.identity import IdentityError
from indexer.core.matchkeys import QUERY_FIELDS, QueryError, canonical_keys, key_kind
from indexer.index.lookup import Verdict
from service.access import came_over_tls, spend
from service.errors import ApiError, Forbidden, RateLimited
from service.middleware import HTML_ERROR_RENDERER
from service.state import INDEX, METRICS, PRIVATE

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "LANGUAGES",
    "choose_language",
    "load_catalogues",
    "setup",
]

HERE: Final = Path(__file__).parent.parent  # service/: templates, static, i18n
LANGUAGES: Final = ("fr", "en")  # the first is the default
CSRF_COOKIE: Final = "exposure_csrf"
CSRF_FIELD: Final = "csrf_token"
# secrets.token_urlsafe(32): 32 random bytes, 43 URL-safe characters.
_TOKEN_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
# The order the fields appear in the form, hence in the error summary.
FORM_FIELDS: Final = ("birth_date", "nir", "last_name", "first_name")
# Loaded in this order (both `defer`): the crypto library, then the page's script.
PRIVATE_SCRIPTS: Final = ("vendor/noble-oprf.js", "private.js")

Catalogue = dict[str, Any]


def load_catalogues(directory: Path = HERE / "i18n") -> dict[str, Catalogue]:
    catalogues: dict[str, Catalogue] = {}
    for lang in LANGUAGES:
        with (directory / f"{lang}.toml").open("rb") as stream:
            catalogues[lang] = tomllib.load(stream)
    return catalogues


def setup(app: web.Application) -> None:
    """Templates, static files, the two routes named "form" and the HTML error page."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a missing catalogue key fails loudly in tests
        default_helpers=False,
    )
    static = cast(web.StaticResource,
                  app.router.add_static("/static/", HERE / "static", name="static"))
    pages = FormPages(
        load_catalogues(),
        stylesheet=str(static.url_for(filename="form.css", append_version=True)),
        icon=str(static.url_for(filename="icon.svg", append_version=True)),
        scripts=[str(static.url_for(filename=name, append_version=True))
                 for name in PRIVATE_SCRIPTS],
    )
    # One resource, one name: the error middleware renders errors of the routes
    # named "form" with `pages.render_error` instead of problem+json.
    resource = app.router.add_resource("/", name="form")
    resource.add_route("GET", pages.show)
    resource.add_route("POST", pages.answer)
    app[HTML_ERROR_RENDERER] = pages.render_error


def choose_language(request: web.Request) -> str:
    """`?lang=` when it names a language we have, else the best of Accept-Language."""
    asked = request.query.get("lang", "")
    if asked in LANGUAGES:
        return asked
    best, best_q = LANGUAGES[0], 0.0
    for item in request.headers.get("Accept-Language", "").split(",")[:32]:
        tag, _, params = item.partition(";")
        primary = tag.strip().lower().partition("-")[0]
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        # Strictly greater: on equal weights the earlier language in the header wins.
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
    return best


def _cookie_token(request: web.Request) -> str | None:
    token = request.cookies.get(CSRF_COOKIE, "")
    return token if _TOKEN_SHAPE.fullmatch(token) else None


def _check_csrf(request: web.Request, form: Mapping[str, object]) -> str:
    """The token, when the cookie and the hidden field agree; 403 otherwise."""
    cookie = _cookie_token(request)
    field = form.get(CSRF_FIELD)
    if cookie is None or not isinstance(field, str) or not hmac.compare_digest(
        cookie.encode(), field.encode()
    ):
        raise Forbidden("The form's anti-forgery token is missing or does not match.")
    return cookie


def _private_urls(request: web.Request) -> dict[str, str] | None:
    """The private routes, when this service offers private lookups; else None.

    Enabled means an OPRF key is configured; whether the index being served has a
    private part is for private.js to ask (`GET /v1/private/params`), since it can
    change with each published generation.
    """
    lookups = request.app.get(PRIVATE)
    if lookups is None or not lookups.enabled:
        return None
    routes = request.app.router.named_resources()
    return {"params": str(routes["private_params"].url_for()),
            "evaluate": str(routes["private_evaluate"].url_for())}


def _script_texts(catalogue: Catalogue) -> str:
    """What private.js says, from the catalogue: field errors as the server words them."""
    return orjson.dumps({
        "errors": catalogue["errors"],
        "error_summary_title": catalogue["form"]["error_summary_title"],
        "error_prefix": catalogue["form"]["error_prefix"],
        "error_title_prefix": catalogue["site"]["error_title_prefix"],
        "site_name": catalogue["site"]["name"],
        "working": catalogue["private"]["working"],
        "retry_one": catalogue["http"]["429"]["retry_one"],
        "retry_many": catalogue["http"]["429"]["retry_many"],
    }).decode()


def _format_date(iso: str, catalogue: Catalogue) -> str:
    """`2024-01-29` in words: "29 janvier 2024", "29 January 2024"."""
    try:
        date = dt.date.fromisoformat(iso)
    except ValueError:
        return iso
    words = catalogue["dates"]
    day = words["first_day"] if date.day == 1 else str(date.day)
    return str(words["pattern"]).format(
        day=day, month=words["months"][date.month - 1], year=date.year
    )


class FormPages:
    """The handlers of `/` and the HTML error page, over the loaded catalogues."""

    def __init__(self, catalogues: Mapping[str, Catalogue], *, stylesheet: str,
                 icon: str, scripts: Sequence[str] = ()) -> None:
        self.catalogues = catalogues
        self.stylesheet = stylesheet
        self.icon = icon
        self.scripts = list(scripts)
        self.script_texts = {lang: _script_texts(catalogue)
                             for lang, catalogue in catalogues.items()}

    async def show(self, request: web.Request) -> web.Response:
        token = _cookie_token(request)
        fresh = token is None
        if token is None:
            token = secrets.token_urlsafe(32)
        response = self._form(request, choose_language(request), token)
        if fresh:
            _set_token_cookie(request, response, token)
        return response

    async def answer(self, request: web.Request) -> web.Response:
        # Spend first: every POST costs a unit, refused ones too (docs/design.md §5), or an
        # enumerator would probe the validator for free.
        spend(request, None)
        form = await request.post()
        token = _check_csrf(request, form)
        lang = choose_language(request)
        submitted = {name: form.get(name) for name in QUERY_FIELDS}
        try:
            keys = canonical_keys(submitted)
        except QueryError as exc:
            return self._form(request, lang, token, submitted, exc.errors, status=422)
        verdict = request.app[INDEX].checker.check_one(keys)
        outcome = "found" if verdict["found"] else "not_found"
        request.app[METRICS].lookups.labels("form", outcome).inc()
        return self._answer(request, lang, verdict, keys)

    async def render_error(self, request: web.Request, error: ApiError) -> web.StreamResponse:
        lang = choose_language(request)
        texts = self.catalogues[lang]["http"]
        page = texts.get(str(error.status), texts["default"])
        retry = None
        if isinstance(error, RateLimited):
            key = "retry_one" if error.retry_after == 1 else "retry_many"
            retry = str(texts["429"][key]).format(seconds=error.retry_after)
        response = self._page(request, "error.html", lang, status=error.status,
                              page=page, retry=retry)
        response.headers.update(error.headers)
        return response

    def _form(
        self,
        request: web.Request,
        lang: str,
        token: str,
        submitted: Mapping[str, object] | None = None,
        errors: Sequence[IdentityError] = (),
        *,
        status: int = 200,
    ) -> web.Response:
        catalogue = self.catalogues[lang]
        messages: dict[str, str] = {}
        for error in errors:  # one message per field: the first problem found
            by_code = catalogue["errors"].get(error.field, {})
            fallback = catalogue["errors"]["fallback"]
            messages.setdefault(error.field, by_code.get(error.code, fallback))
        # Only text goes back into the form (a multipart upload is not a value).
        values = {name: value if isinstance(value, str) else ""
                  for name, value in (submitted or {}).items()}
        private_urls = _private_urls(request)
        return self._page(
            request, "form.html", lang, status=status, token=token,
            values={name: values.get(name, "") for name in FORM_FIELDS},
            errors=messages,
            error_order=[name for name in FORM_FIELDS if name in messages],
            # No private lookups, no scripts: nothing to enhance.
            scripts=self.scripts if private_urls else [],
            private_urls=private_urls,
            private_texts=self.script_texts[lang],
        )

    def _answer(self, request: web.Request, lang: str, verdict: Verdict,
                keys: Sequence[str]) -> web.Response:
        # The answer page gets the verdict and which kinds of key were asked, never
        # the values: nothing the person typed can be echoed on it.
        catalogue = self.catalogues[lang]
        sources = [
            {**source, "date_text": _format_date(source["breach_date"], catalogue),
             "strong": "nir" in source["matched_on"]}
            for source in verdict["sources"]
        ]
        return self._page(
            request, "answer.html", lang, verdict=verdict, sources=sources,
            asked_strong=any(key_kind(key) == "strong" for key in keys),
            asked_weak=any(key_kind(key) == "weak" for key in keys),
        )

    def _page(self, request: web.Request, template: str, lang: str, *, status: int = 200,
              **context: Any) -> web.Response:
        other = next(code for code in LANGUAGES if code != lang)
        response: web.Response = aiohttp_jinja2.render_template(
            template, request,
            {"t": self.catalogues[lang], "lang": lang, "other_lang": other,
             "other": self.catalogues[other]["meta"], "stylesheet": self.stylesheet,
             "icon": self.icon, **context},
            status=status,
        )
        # Pages carry a per-browser token, typed values or a verdict: never cache them.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Language"] = lang
        response.headers["Vary"] = "Accept-Language, Cookie"
        return response


def _set_token_cookie(request: web.Request, response: web.Response, token: str) -> None:
    # A session cookie: gone when the browser closes. `Secure` whenever the browser
    # talks TLS, to us or to a trusted proxy (X-Forwarded-Proto); plain HTTP only
    # happens on localhost.
    response.set_cookie(CSRF_COOKIE, token, path="/", httponly=True, samesite="Strict",
                        secure=came_over_tls(request) or None)
