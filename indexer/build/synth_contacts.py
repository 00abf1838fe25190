"""The insurer's own contact columns of the synthetic member file (members.csv).

`exposure-client check` never sends them (only ref and the identity fields leave the
insurer); `exposure-client notify` uses them to address the notices. Most members
have an e-mail address, most a French postal address, a few prefer English, and a
few cells are wrong the way real files are (a truncated e-mail, a four-digit
postcode) so that the demo and the tests reach every path. E-mail domains are the
reserved example domains (RFC 2606); postcodes and cities are real pairs.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Final

import numpy as np

__all__ = ["CONTACT_HEADER", "with_contacts"]

CONTACT_HEADER: Final = ("email", "address_1", "address_2", "address_3", "postcode", "city",
                         "language")

_STREETS: Final = (
    "rue de la République", "avenue Jean Jaurès", "rue Victor Hugo", "place de la Mairie",
    "boulevard Gambetta", "rue Pasteur", "chemin des Vignes", "allée des Tilleuls",
    "rue du Général de Gaulle", "impasse des Lilas", "rue de l’Église", "avenue de la Gare",
    "rue Jules Ferry", "quai Saint-Pierre", "rue des Écoles", "route de Bordeaux",
    "rue d’Alsace-Lorraine", "cours Lafayette", "rue Émile Zola", "rue du Moulin",
)
_CITIES: Final = (
    ("75011", "Paris"), ("69003", "Lyon"), ("13005", "Marseille"), ("31000", "Toulouse"),
    ("33000", "Bordeaux"), ("59000", "Lille"), ("44000", "Nantes"), ("67000", "Strasbourg"),
    ("06000", "Nice"), ("35000", "Rennes"), ("34000", "Montpellier"), ("42000",
    "Saint-Étienne"), ("20000", "Ajaccio"), ("97400", "Saint-Denis"), ("29200", "Brest"),
    ("63000", "Clermont-Ferrand"), ("87000", "Limoges"), ("57000", "Metz"),
    ("64100", "Bayonne"), ("01000", "Bourg-en-Bresse"),
)
_COMPLEMENTS: Final = ("Appartement {n}", "Étage {n}", "Bâtiment B", "Résidence Les Pins",
                       "Escalier {n}")
_DOMAINS: Final = ("example.org", "example.net", "example.com")


def _local_part(last: str, first: str) -> str:
    text = f"{first}.{last}".replace("æ", "ae").replace("œ", "oe").lower()
    bare = unicodedata.normalize("NFKD", text)
    return "".join(c for c in bare if c.isascii() and (c.isalnum() or c == ".")) or "adherent"


def with_contacts(rows: Sequence[str], seed: int, before: int) -> list[str]:
    """`rows` ("nir;last;first;birth") with the contact cells appended.

    Drawn from (seed, position in the file) only, so the member file stays a function
    of `--records` and `--seed`, whatever the identity columns hold.
    """
    n = len(rows)
    rng = np.random.default_rng([seed, 0xC0FFEE, before])
    u = rng.random((n, 6)).tolist()
    picks = rng.integers(0, 1 << 30, size=(n, 4)).tolist()
    out: list[str] = []
    for row, r, k in zip(rows, u, picks, strict=True):
        _, last, first, _ = row.split(";", 3)
        email = ""
        if r[0] < 0.75:  # three members in four gave an e-mail address
            email = f"{_local_part(last, first)}{k[0] % 100}@{_DOMAINS[k[1] % 3]}"
            if r[1] < 0.01:
                email = email.split("@")[0] + "@"  # truncated by an old export
        street = complement = building = postcode = city = ""
        if r[2] < 0.93:  # a few have no postal address on file
            street = f"{k[2] % 120 + 1} {_STREETS[k[2] % len(_STREETS)]}"
            postcode, city = _CITIES[k[3] % len(_CITIES)]
            if r[3] < 0.25:
                complement = _COMPLEMENTS[k[3] % len(_COMPLEMENTS)].format(n=k[0] % 9 + 1)
            if r[3] > 0.97:
                building = "Résidence du Parc"
            if r[4] < 0.005:
                postcode = postcode[1:]  # a leading zero lost in a spreadsheet
        language = "en" if r[5] < 0.03 else ("fr" if r[5] > 0.9 else "")
        out.append(f"{row};{email};{street};{complement};{building};{postcode};{city};"
                   f"{language}")
    return out
