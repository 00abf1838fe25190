"""The insurer's details for the notices: `notify.toml`.

Every field is optional; a missing one is shown as a clearly marked placeholder
("[À COMPLÉTER : ...]") in every output, and a run without any config file marks
each notice and the report as a draft. The logo must be a local file: nothing here
ever fetches anything.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "NotifyConfig", "load_config", "EXAMPLE_CONFIG"]

EXAMPLE_CONFIG = """\
# notify.toml: the insurer's details for `exposure-client notify --config notify.toml`.
[insurer]
name = "Mutuelle Exemple"
address = ["12 rue de la Paix", "75002 Paris"]
phone = "01 23 45 67 89"
email = "contact@mutuelle-exemple.fr"
website = "https://www.mutuelle-exemple.fr"
logo = "logo.png"                  # PNG or JPEG, relative to this file; optional
sender = "Mutuelle Exemple <information@mutuelle-exemple.fr>"   # e-mails' From

[dpo]
name = "Délégué à la protection des données"
email = "dpo@mutuelle-exemple.fr"
address = ["DPO, Mutuelle Exemple", "12 rue de la Paix", "75002 Paris"]

[signature]
name = "Marie Martin"
title = "Directrice générale"

[notice]
# What the insurer did (GDPR art. 34: the measures taken), one paragraph each.
measures = ["Nous surveillons les demandes inhabituelles sur les contrats concernés."]
measures_en = ["We watch for unusual requests on the contracts concerned."]

[check]
index_generation = "20240301T000000Z"   # as printed by exposure-index info; optional
checked_on = "2026-12-01"                # the date `exposure-client check` ran; optional
"""


class ConfigError(Exception):
    """notify.toml cannot be used; the message says which key and what to write."""


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    present: bool = False  # False: no file given, every output is a draft
    insurer_name: str = ""
    insurer_address: tuple[str, ...] = ()
    insurer_phone: str = ""
    insurer_email: str = ""
    insurer_website: str = ""
    logo: Path | None = None
    sender: str = ""
    dpo_name: str = ""
    dpo_email: str = ""
    dpo_address: tuple[str, ...] = ()
    signature_name: str = ""
    signature_title: str = ""
    measures: dict[str, tuple[str, ...]] = field(default_factory=dict)  # language -> paragraphs
    index_generation: str = ""
    checked_on: str = ""
    digest: str = ""  # of the file's bytes: a resumed run must use the same config

    def for_templates(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "name": self.insurer_name,
            "address": list(self.insurer_address),
            "phone": self.insurer_phone,
            "email": self.insurer_email,
            "website": self.insurer_website,
            "dpo_name": self.dpo_name,
            "dpo_email": self.dpo_email,
            "dpo_address": list(self.dpo_address),
            "signature_name": self.signature_name,
            "signature_title": self.signature_title,
        }


def _text(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key} must be a string in quotes")
    if any(ch in value for ch in "\r\n"):
        raise ConfigError(f"{where}.{key} must be on one line")
    return value.strip()


def _lines(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key} must be a list of strings, e.g. "
                          '["12 rue de la Paix", "75002 Paris"]')
    return tuple(v.strip() for v in value if v.strip())


def _table(document: dict[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{key}] must be a table")
    return value


def load_config(path: Path | None) -> NotifyConfig:
    """Read notify.toml; no path gives the draft configuration (placeholders)."""
    if path is None:
        return NotifyConfig()
    try:
        raw = path.read_bytes()
        document = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--config {path}: not valid UTF-8 TOML ({exc})") from None
    insurer = _table(document, "insurer")
    dpo = _table(document, "dpo")
    signature = _table(document, "signature")
    notice = _table(document, "notice")
    check = _table(document, "check")
    logo: Path | None = None
    logo_text = _text(insurer, "logo", "insurer")
    if logo_text:
        if "://" in logo_text:
            raise ConfigError("insurer.logo must be a local file (nothing is ever fetched)")
        logo = (path.parent / logo_text).resolve()
        if not logo.is_file():
            raise ConfigError(f"insurer.logo: {logo} does not exist")
        if logo.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise ConfigError("insurer.logo must be a PNG or JPEG file")
    measures = {"fr": _lines(notice, "measures", "notice"),
                "en": _lines(notice, "measures_en", "notice")}
    return NotifyConfig(
        present=True,
        insurer_name=_text(insurer, "name", "insurer"),
        insurer_address=_lines(insurer, "address", "insurer"),
        insurer_phone=_text(insurer, "phone", "insurer"),
        insurer_email=_text(insurer, "email", "insurer"),
        insurer_website=_text(insurer, "website", "insurer"),
        logo=logo,
        sender=_text(insurer, "sender", "insurer"),
        dpo_name=_text(dpo, "name", "dpo"),
        dpo_email=_text(dpo, "email", "dpo"),
        dpo_address=_lines(dpo, "address", "dpo"),
        signature_name=_text(signature, "name", "signature"),
        signature_title=_text(signature, "title", "signature"),
        measures={k: v for k, v in measures.items() if v},
        index_generation=_text(check, "index_generation", "check"),
        checked_on=_text(check, "checked_on", "check"),
        digest=hashlib.blake2b(raw, digest_size=16).hexdigest(),
    )
