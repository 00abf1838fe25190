"""Helpers shared by the service tests: a hand-written breach whose answers are known
exactly, and small readers for problem documents and NDJSON streams.

The synthetic breach of conftest is the realistic data; this one is tiny and written
by hand so that a test can state the exact answer (which source, which key, which
data classes) rather than read it back from the generator.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientResponse

from indexer.build.local import BuildOptions, build_index

PROBLEM_TYPE = "application/problem+json"

ALPHA_CSV = (
    "NIR;NOM;NOM_USAGE;PRENOMS;DATE_NAISSANCE;RANG_NAISSANCE;ORGANISME;"
    "SITUATION_FAMILIALE;GARANTIES_TP\r\n"
    "294037512000591;DUPONT;MARTIN;Marie Claire;15/03/1994;;Mutuelle Alpha;;PHAR/DENT\r\n"
    "186022A21532523;LE GALL;;Jean-Pierre;12/02/1986;1;Mutuelle Beta;marié;OPTI\r\n"
)
BETA_CSV = (
    "ssn,last_name,usage_name,first_names,birth_date,birth_rank,insurer,marital_status,"
    "tp_guarantees\n"
    ",Dupont,,Marie,1994-03-15,2,,M,\n"
    "253072B07300470,D'Artagnan,,Lætitia,1953-07-20,,Assur Gamma,,\n"
)
EXTRA_ALPHA_ROW = "175119912345611;NOUVEAU;;Paul;01/11/1975;;Mutuelle Alpha;;PHAR\r\n"

SOURCES_TOML = """\
[[sources]]
id = "alpha-2024"
title = "Alpha"
breach_date = "2024-01-29"
description = "First hand-written source."
path = "alpha.csv"
encoding = "utf-8"
delimiter = ";"

[[sources]]
id = "beta-2024"
title = "Beta"
breach_date = "2024-02-05"
description = "Second hand-written source."
path = "beta.csv"
"""

# Every identifier of the hand-written breach, in the forms a client may send them.
MARIE = {"nir": "294037512000591", "birth_date": "1994-03-15",
         "last_name": "Dupont", "first_name": "Marie"}
JEAN_PIERRE = {"nir": "1 86 02 2a 215 325 23", "birth_date": "12/02/1986",
               "last_name": "Le-Gall", "first_name": "Jean Pierre"}
LAETITIA = {"nir": "253072b07300470", "birth_date": "20.07.1953",
            "last_name": "d’artagnan", "first_name": "LAETITIA"}
STRANGER = {"nir": "2 95 10 99 126 111 93", "birth_date": "1995-10-02",
            "last_name": "Inconnu", "first_name": "Personne"}
NEWCOMER = {"nir": "", "birth_date": "1975-11-01", "last_name": "Nouveau", "first_name": "Paul"}


@dataclass(frozen=True)
class Crafted:
    dir: Path
    sources_toml: Path
    pepper_file: Path
    index_dir: Path

    def publish(self, *, extra_row: bool = False, index_dir: Path | None = None) -> Path:
        """Build a new generation (optionally with one more person) and publish it."""
        alpha = ALPHA_CSV + (EXTRA_ALPHA_ROW if extra_row else "")
        (self.dir / "alpha.csv").write_text(alpha, encoding="utf-8", newline="")
        build_index(self.sources_toml, index_dir or self.index_dir,
                    self.pepper_file.read_bytes(), BuildOptions(shards=2, workers=1))
        return (index_dir or self.index_dir) / "current"


def build_crafted(root: Path) -> Crafted:
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    data.mkdir(exist_ok=True)
    (data / "sources.toml").write_text(SOURCES_TOML, encoding="utf-8")
    (data / "beta.csv").write_text(BETA_CSV, encoding="utf-8", newline="")
    pepper = root / "pepper.key"
    pepper.write_bytes(os.urandom(32))
    pepper.chmod(0o600)
    crafted = Crafted(data, data / "sources.toml", pepper, root / "index")
    crafted.publish()
    return crafted


async def problem(response: ClientResponse, status: int) -> dict[str, Any]:
    """The RFC 9457 body of an error answer, after checking its shape."""
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM_TYPE
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = orjson.loads(await response.read())
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= set(body)
    return body


async def ndjson(response: ClientResponse) -> list[dict[str, Any]]:
    assert response.status == 200, await response.text()
    assert response.content_type == "application/x-ndjson"
    assert response.headers["Cache-Control"] == "no-store"
    raw = await response.read()
    assert raw.endswith(b"\n")
    return [orjson.loads(line) for line in raw.split(b"\n") if line]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def random_values(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value of any shape, biased towards the field names and almost-identifiers."""
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2**63, 1.5e300, -0.0])
    if kind == 2:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000),
                                       rng.randrange(0xE000, 0x10FFFF)]))
                       for _ in range(rng.randrange(0, 40)))
    if kind == 3:
        return rng.choice(["294037512000591", "2 94 03 75 120 005 91", "1994-03-15", "00/00/1994",
                           "15/03/1994", "DUPONT", "ß", "Œ", "\u0301", "2A", "", " ", "\x00"])
    if kind == 4:
        return "".join(rng.choice("0123456789 ./-AB2ab") for _ in range(rng.randrange(0, 20)))
    if kind == 5:
        return [random_values(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice(["nir", "birth_date", "last_name", "first_name", "ref", "x"]):
            random_values(rng, depth + 1) for _ in range(rng.randrange(0, 5))}


def totals(summary: Mapping[str, Any]) -> dict[str, int]:
    """The contract's counts of a bulk summary line (lines, found, errors), after
    checking that its per-level counts add up to `found`."""
    counts = summary["summary"]
    assert counts["found"] == sum(counts[level] for level in ("strong", "weak", "similar"))
    return {name: counts[name] for name in ("lines", "found", "errors")}
