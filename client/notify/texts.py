"""Templates and texts: the package's own, or an insurer's from `--templates DIR`.

A file in the insurer's directory replaces the package file of the same name
(`texts.fr.toml`, `email.html.j2`, `letter.xml.j2`...); the others stay. Texts are
plain strings with `{placeholders}`; the templates escape everything (HTML for the
e-mail and the report, XML for the letter markup), so a member's name can never
inject markup.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import jinja2

from client.notify.config import NotifyConfig

__all__ = ["LANGUAGES", "SOURCES", "Texts", "TemplateError", "long_date", "make_environment"]

LANGUAGES: Final = ("fr", "en")
# The breaches this service knows (docs/design.md §1); an id outside this list is
# shown as it is written in RESULTS.csv.
SOURCES: Final[Mapping[str, tuple[str, dt.date]]] = {
    "viamedis-2024": ("Viamedis", dt.date(2024, 1, 29)),
    "almerys-2024": ("Almerys", dt.date(2024, 2, 5)),
}
_PACKAGE_TEMPLATES: Final = Path(__file__).parent / "templates"


class TemplateError(Exception):
    """A template or texts file cannot be used; names the file."""


def make_environment(override: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if override is not None:
        if not override.is_dir():
            raise TemplateError(f"--templates {override}: not a directory")
        loaders.append(jinja2.FileSystemLoader(str(override)))
    loaders.append(jinja2.FileSystemLoader(str(_PACKAGE_TEMPLATES)))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        # .html and .xml templates are escaped; .txt templates are plain text.
        autoescape=jinja2.select_autoescape(["html", "xml", "html.j2", "xml.j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def long_date(day: dt.date, texts: Mapping[str, Any]) -> str:
    dates = texts["dates"]
    number = dates["first_day"] if day.day == 1 else str(day.day)
    return f"{number} {dates['months'][day.month - 1]} {day.year}"


class Texts:
    """The texts of one language, with the insurer's details or the placeholders."""

    def __init__(self, environment: jinja2.Environment, language: str,
                 config: NotifyConfig) -> None:
        name = f"texts.{language}.toml"
        try:
            assert environment.loader is not None
            source, filename, _ = environment.loader.get_source(environment, name)
            self.table: dict[str, Any] = tomllib.loads(source)
        except jinja2.TemplateNotFound:
            raise TemplateError(f"{name}: missing") from None
        except tomllib.TOMLDecodeError as exc:
            raise TemplateError(f"{name}: not valid TOML ({exc})") from None
        self.language = language
        self.digest = hashlib.blake2b(source.encode(), digest_size=8).hexdigest()
        p = self.table["placeholders"]
        self.insurer = config.insurer_name or p["insurer"]
        self.phone = config.insurer_phone or p["phone"]
        self.insurer_email = config.insurer_email or p["email"]
        self.address = list(config.insurer_address) or [p["address"]]
        dpo = [line for line in (config.dpo_name, config.dpo_email, *config.dpo_address) if line]
        self.dpo = dpo or [p["dpo"]]
        signature = [line for line in (config.signature_name, config.signature_title) if line]
        self.signature = signature or [p["signature"]]
        notice = self.table["notice"]
        own = config.measures.get(language) or config.measures.get("fr")
        self.measures = [notice["measures_operators"],
                         *(own or [notice["measures_insurer_default"]]),
                         notice["measures_notice"]]
        self.draft = not config.present
        self.website = config.insurer_website

    def __getitem__(self, key: str) -> Any:
        return self.table[key]

    def notice(self, key: str, **values: str) -> str:
        text: str = self.table["notice"][key]
        if "{" not in text:
            return text
        return text.format_map(_Keep(insurer=self.insurer, phone=self.phone, **values))

    def breach_lines(self, sources: tuple[str, ...]) -> list[str]:
        lines = []
        for source in sources:
            known = SOURCES.get(source)
            if known is None:
                lines.append(source)
            else:
                lines.append(self.notice("breach_line", title=known[0],
                                         date=long_date(known[1], self.table)))
        return lines

    def classes(self, exposed: tuple[str, ...]) -> list[str]:
        names: Mapping[str, str] = self.table["classes"]
        return [names.get(name, name) for name in exposed]

    def context(self) -> dict[str, Any]:
        """What every template of this language sees, besides the member's own values."""
        n = self.notice
        links = self.table["links"]
        return {
            "lang": self.language,
            "draft": self.draft,
            "draft_banner": self.table["meta"]["draft_banner"],
            "subject": n("subject"),
            "insurer": self.insurer,
            "insurer_address": self.address,
            "insurer_phone": self.phone,
            "insurer_email": self.insurer_email,
            "insurer_website": self.website,
            "dpo": self.dpo,
            "signature": self.signature,
            "measures": self.measures,
            "links": links,
            "t": {key: n(key, url=_url_for(key, links))
                  for key in self.table["notice"]},
        }


class _Keep(dict[str, str]):
    """Leaves a placeholder it has no value for (`{name}`) for the template to fill."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _url_for(key: str, links: Mapping[str, str]) -> str:
    return {"do_spam": links["spam_url"], "do_victim": links["assistance_url"],
            "contact_cnil": links["cnil_url"]}.get(key, "")
