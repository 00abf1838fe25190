"""The web form in a real browser: Debian's headless Chromium driven by Playwright.

The real app serves a real index on a real port; the tests type, click and read what
a person would, in French and in English, on a phone-sized screen and a desktop one.
Screenshots go to each test's `tmp_path`. The accessibility check runs axe-core from
the copy vendored in `tests/vendor/` (no network); its full report is written next to
the screenshots and any "serious" or "critical" violation fails the test.

Chromium is never downloaded by Playwright: `.ci/run` installs Debian's `chromium`.
Without it these tests are skipped, except in CI where they must run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Breach
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    WebError,
    expect,
)
from test_form import CATALOGUES, pick

from service.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
BAD_CHECKSUM_NIR = "2 95 10 99 126 111 99"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"),
        reason=f"{CHROMIUM} is missing: `apt-get install chromium` (CI installs it)",
    ),
]

@pytest.fixture
async def base_url(aiohttp_server: Callable[..., Any], settings: Any) -> str:
    server = await aiohttp_server(create_app(settings))
    return str(server.make_url("")).rstrip("/")


class Watch:
    """What a page did besides what we asked: requests to elsewhere, console errors."""

    def __init__(self, context: BrowserContext, origin: str) -> None:
        self.origin = origin
        self.foreign: list[str] = []
        self.problems: list[str] = []
        context.on("request", self._request)
        context.on("console", self._console)
        context.on("weberror", self._error)

    def _request(self, request: Request) -> None:
        if not request.url.startswith(self.origin + "/"):
            self.foreign.append(request.url)

    def _console(self, message: ConsoleMessage) -> None:
        # Chromium logs every 4xx document ("the server responded with a status of
        # 422"): those are the answers under test. Anything else (a CSP refusal, a
        # script error) is a fault.
        if message.type == "error" and "status of 4" not in message.text:
            self.problems.append(message.text)

    def _error(self, error: WebError) -> None:
        self.problems.append(str(error.error))

    def check(self) -> None:
        assert self.foreign == [], "a request left the service"
        assert self.problems == [], "console errors (a CSP violation?)"


async def new_page(browser: Browser, base_url: str, *, locale: str,
                   viewport: dict[str, int], **options: Any) -> tuple[Page, Watch]:
    context = await browser.new_context(locale=locale, viewport=viewport, **options)
    return await context.new_page(), Watch(context, base_url)


async def fill_and_submit(page: Page, lang: str, fields: dict[str, str]) -> None:
    form = CATALOGUES[lang]["form"]
    for name, value in fields.items():
        # By its visible label: fails if a label is not tied to its field.
        await page.get_by_label(form[name]["label"], exact=True).fill(value)
    await page.get_by_role("button", name=form["submit"]).click()
    await page.wait_for_load_state()


async def no_horizontal_scroll(page: Page) -> None:
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{overflow}px of horizontal scroll"


async def body_text(page: Page) -> str:
    return " ".join((await page.inner_text("body")).split())


def shows(text: str, catalogue_text: str) -> bool:
    return " ".join(catalogue_text.split()) in text


@pytest.mark.parametrize(("lang", "locale", "viewport"), [
    ("fr", "fr-FR", PHONE),
    ("en", "en-GB", DESKTOP),  # English from the browser's Accept-Language alone
])
async def test_a_person_checks_in_the_breach_not_in_it_and_mistyped(
    browser: Browser, base_url: str, breach: Breach, tmp_path: Path,
    lang: str, locale: str, viewport: dict[str, int],
) -> None:
    t = CATALOGUES[lang]
    page, watch = await new_page(browser, base_url, locale=locale, viewport=viewport)
    await page.goto(base_url + "/")
    assert await page.get_attribute("html", "lang") == lang
    await expect(page.get_by_role("heading", level=1)).to_have_text(t["form"]["title"])
    await page.screenshot(path=tmp_path / f"{lang}-1-form.png", full_page=True)

    # Someone in the breach, by social security number and date of birth.
    member = pick(breach, lambda m, e: e["match"] == "strong" and bool(m["nir"]))
    await fill_and_submit(page, lang, {"birth_date": member["birth_date"], "nir": member["nir"]})
    assert page.url == base_url + f"/?lang={lang}"  # the identifiers went in the body
    await expect(page.get_by_role("heading", level=1)).to_have_text(t["answer"]["title_strong"])
    text = await body_text(page)
    assert shows(text, t["answer"]["lead_strong"])
    assert shows(text, t["classes"]["nir"]) and shows(text, t["advice"]["phishing_title"])
    expected_sources = breach.expected()[member["ref"]]["sources"].split("|")
    breaches = page.locator("section.breach h2")
    await expect(breaches).to_have_count(len(expected_sources))
    content = await page.content()
    assert member["nir"] not in content and member["birth_date"] not in content
    await page.screenshot(path=tmp_path / f"{lang}-2-found.png", full_page=True)

    # Someone not in it, by name and date of birth: a new check from the answer page.
    await page.get_by_role("link", name=t["answer"]["again"]).click()
    stranger = pick(breach, lambda m, e: e["in_breach"] == "false")
    await fill_and_submit(page, lang, {
        "birth_date": stranger["birth_date"], "last_name": stranger["last_name"],
        "first_name": stranger["first_name"],
    })
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        t["answer"]["title_not_found"])
    text = await body_text(page)
    assert shows(text, t["answer"]["limits"][0]) and shows(text, t["answer"]["tip_names_only"])
    assert stranger["last_name"] not in text and stranger["first_name"] not in text
    await page.screenshot(path=tmp_path / f"{lang}-3-not-found.png", full_page=True)

    # A mistyped number: told inline, next to the field, with the typed values kept.
    await page.get_by_role("link", name=t["answer"]["again"]).click()
    await fill_and_submit(page, lang, {"birth_date": "12/03/1994", "nir": BAD_CHECKSUM_NIR})
    message = t["errors"]["nir"]["invalid_checksum"]
    nir = page.get_by_label(t["form"]["nir"]["label"], exact=True)
    await expect(nir).to_have_value(BAD_CHECKSUM_NIR)
    await expect(nir).to_have_attribute("aria-invalid", "true")
    await expect(nir).to_have_accessible_description(
        " ".join(f"{t['form']['nir']['hint']} {t['form']['error_prefix']} {message}".split()))
    await expect(page.locator("#nir-error")).to_be_visible()
    await expect(page.get_by_label(t["form"]["birth_date"]["label"], exact=True)).to_have_value(
        "12/03/1994")
    # The error summary takes the focus, so a screen reader starts there.
    await expect(page.locator(".error-summary")).to_be_focused()
    await page.get_by_role("link", name=message).click()
    await expect(page).to_have_url(base_url + f"/?lang={lang}#nir")
    await page.screenshot(path=tmp_path / f"{lang}-4-invalid.png", full_page=True)

    # ... and once fixed, it goes through.
    await nir.fill(member["nir"])
    await page.get_by_label(t["form"]["birth_date"]["label"], exact=True).fill(
        member["birth_date"])
    await page.get_by_role("button", name=t["form"]["submit"]).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(t["answer"]["title_strong"])
    watch.check()
    await page.context.close()


async def test_language_switch_link(browser: Browser, base_url: str) -> None:
    page, watch = await new_page(browser, base_url, locale="fr-FR", viewport=PHONE)
    await page.goto(base_url + "/")
    await page.get_by_role("link", name=CATALOGUES["en"]["meta"]["switch_to"]).click()
    assert await page.get_attribute("html", "lang") == "en"
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        CATALOGUES["en"]["form"]["title"])
    await page.get_by_role("link", name=CATALOGUES["fr"]["meta"]["switch_to"]).click()
    assert await page.get_attribute("html", "lang") == "fr"
    watch.check()
    await page.context.close()


async def test_narrow_screen_zoom_and_keyboard(
    browser: Browser, base_url: str, breach: Breach, tmp_path: Path
) -> None:
    t = CATALOGUES["fr"]
    member = pick(breach, lambda m, e: e["match"] == "strong" and bool(m["nir"]))
    # 320 CSS px (WCAG reflow), and a 1280x800 window at 200% zoom (640x400 CSS px).
    for label, viewport, scale in (("320px", {"width": 320, "height": 640}, 1),
                                   ("zoom200", {"width": 640, "height": 400}, 2)):
        page, watch = await new_page(browser, base_url, locale="fr-FR", viewport=viewport,
                                     device_scale_factor=scale)
        await page.goto(base_url + "/")
        await no_horizontal_scroll(page)
        await page.screenshot(path=tmp_path / f"{label}-form.png", full_page=True)
        await fill_and_submit(page, "fr", {"birth_date": "12/03/1994", "nir": BAD_CHECKSUM_NIR})
        await no_horizontal_scroll(page)
        await page.screenshot(path=tmp_path / f"{label}-invalid.png", full_page=True)
        await page.goto(base_url + "/")
        await fill_and_submit(page, "fr", {"birth_date": member["birth_date"],
                                           "nir": member["nir"]})
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            t["answer"]["title_strong"])
        await no_horizontal_scroll(page)
        await page.screenshot(path=tmp_path / f"{label}-found.png", full_page=True)
        watch.check()
        await page.context.close()

    # Keyboard: the first Tab shows the skip link; focus is always visible.
    page, watch = await new_page(browser, base_url, locale="fr-FR", viewport=PHONE)
    await page.goto(base_url + "/")
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name=t["site"]["skip_link"])
    await expect(skip).to_be_focused()
    await expect(skip).to_be_in_viewport()
    await page.get_by_label(t["form"]["birth_date"]["label"], exact=True).focus()
    await page.keyboard.press("Tab")
    nir = page.get_by_label(t["form"]["nir"]["label"], exact=True)
    await expect(nir).to_be_focused()
    outline = await nir.evaluate("e => getComputedStyle(e).outlineStyle + ' ' + "
                                 "getComputedStyle(e).outlineWidth")
    assert outline.startswith("solid") and not outline.endswith(" 0px")
    await page.screenshot(path=tmp_path / "keyboard-focus.png")
    # Enter submits without a mouse.
    await page.get_by_label(t["form"]["birth_date"]["label"], exact=True).fill(
        member["birth_date"])
    await nir.fill(member["nir"])
    await nir.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text(t["answer"]["title_strong"])
    watch.check()
    await page.context.close()


async def axe(page: Page, tmp_path: Path, name: str) -> list[dict[str, Any]]:
    """Run the vendored axe-core on the page; its report goes to `tmp_path`."""
    await page.add_script_tag(path=AXE)
    report: dict[str, Any] = await page.evaluate("axe.run()")
    (tmp_path / f"axe-{name}.json").write_text(json.dumps(
        {"url": report["url"], "violations": report["violations"],
         "incomplete": [i["id"] for i in report["incomplete"]],
         "passes": [p["id"] for p in report["passes"]]}, indent=2))
    return [{"page": name, "id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]]} for v in report["violations"]]


async def test_accessibility_with_axe_core(
    browser: Browser, base_url: str, breach: Breach, tmp_path: Path
) -> None:
    assert AXE.read_text(encoding="utf-8")[:200].startswith("/*! axe v")
    member = pick(breach, lambda m, e: e["match"] == "strong" and bool(m["nir"]))
    weak = pick(breach, lambda m, e: e["match"] == "weak" and e["kind"] != "several_given_names")
    violations: list[dict[str, Any]] = []
    # The page's CSP forbids injected scripts, rightly: this context alone bypasses it.
    for lang, locale in (("fr", "fr-FR"), ("en", "en-GB")):
        page, _ = await new_page(browser, base_url, locale=locale, viewport=PHONE,
                                 bypass_csp=True)
        await page.goto(base_url + "/")
        violations += await axe(page, tmp_path, f"{lang}-form")
        for summary in await page.locator("details summary").all():
            await summary.click()
        violations += await axe(page, tmp_path, f"{lang}-form-details-open")
        await fill_and_submit(page, lang, {"birth_date": "12/03/94", "nir": BAD_CHECKSUM_NIR})
        violations += await axe(page, tmp_path, f"{lang}-invalid")
        await page.goto(base_url + "/")
        await fill_and_submit(page, lang, {"birth_date": member["birth_date"],
                                           "nir": member["nir"]})
        violations += await axe(page, tmp_path, f"{lang}-found-strong")
        await page.goto(base_url + "/")
        await fill_and_submit(page, lang, {k: weak[k] for k in
                                           ("birth_date", "last_name", "first_name")})
        violations += await axe(page, tmp_path, f"{lang}-found-weak")
        await page.goto(base_url + "/")
        await fill_and_submit(page, lang, {"birth_date": "01/01/1950", "last_name": "Xyzzy",
                                           "first_name": "Plugh"})
        violations += await axe(page, tmp_path, f"{lang}-not-found")
        await page.context.clear_cookies()
        await page.get_by_role("link", name=CATALOGUES[lang]["answer"]["again"]).click()
        await page.context.clear_cookies()
        await page.get_by_role("button", name=CATALOGUES[lang]["form"]["submit"]).click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            CATALOGUES[lang]["http"]["403"]["title"])
        violations += await axe(page, tmp_path, f"{lang}-error-403")
        await page.context.close()
    (tmp_path / "axe-summary.json").write_text(json.dumps(violations, indent=2))
    print("axe-core violations:", json.dumps(violations, indent=1))
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert serious == []
