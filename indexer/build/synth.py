"""Synthetic stand-in for the January 2024 Viamedis/Almerys breach dumps.

``exposure-index synth`` writes, into one directory, two breach dumps shaped like the
real ones (``viamedis.csv``: cp1252, ``;``, French headers, ``DD/MM/YYYY``, CRLF;
``almerys.csv``: UTF-8, ``,``, English headers, ISO dates, some spaced NIRs), the
``sources.toml`` that describes them, an insurer's member file (``members.csv``) and
the generator's ground truth for that member file (``members-expected.csv``).

Half the members are people of the breach, each typed with one kind of typing
difference of docs/design.md §3 (``KIND_DIFFERENCE``; the typing itself is
indexer/build/variants.py), with the level a lookup should answer; the other half are
people drawn from the same name and date distributions who are not in it.

Every identity is invented, but consistent the way real ones are, because the
normaliser, the bad-row accounting and the tests all lean on that: the NIR's sex digit
matches the first name's gender, its year and month match the date of birth, its key
is valid (2A/2B, overseas and born-abroad places included); children (ayants droit)
appear under a parent's NIR with their own date of birth; twins carry birth rank 1/2;
about a fifth of the people sit in both dumps. About 0.1% of the rows are broken on
purpose (wrong NIR key, impossible date).

Speed matters (33 million rows in minutes), so rows are generated in fixed chunks:
every random choice is a numpy draw over the whole chunk, fields come from lookup
tables (dates, places, names) and rows are joined with str.join, not the csv module.
Each chunk is seeded from ``(seed, chunk index)`` alone and chunks are written in
order, so the bytes depend on ``(records, seed)`` and not on the number of workers.

This module must never read real data: it only invents it.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date
from functools import cache
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from indexer.build.synth_contacts import CONTACT_HEADER, with_contacts
from indexer.build.variants import EDITS, fold, one_edit, sound_alike, split_double, swap_day_month

__all__ = [
    "ALMERYS_HEADER",
    "EXACT_KINDS",
    "FEMALE_FIRST_NAMES",
    "KIND_DIFFERENCE",
    "MALE_FIRST_NAMES",
    "MEMBERS_EXPECTED_HEADER",
    "MEMBERS_HEADER",
    "MEMBER_KINDS",
    "SOURCE_IDS",
    "VIAMEDIS_HEADER",
    "SynthSummary",
    "members_size",
    "write_synthetic_breach",
]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[np.object_]

VIAMEDIS_ID: Final = "viamedis-2024"
ALMERYS_ID: Final = "almerys-2024"
SOURCE_IDS: Final = (VIAMEDIS_ID, ALMERYS_ID)

VIAMEDIS_HEADER: Final = (
    "NIR", "NOM", "NOM_USAGE", "PRENOMS", "DATE_NAISSANCE", "RANG_NAISSANCE",
    "ORGANISME", "SITUATION_FAMILIALE", "GARANTIES_TP",
)  # fmt: skip
ALMERYS_HEADER: Final = (
    "ssn", "last_name", "usage_name", "first_names", "birth_date", "birth_rank",
    "insurer", "marital_status", "tp_guarantees",
)  # fmt: skip
MEMBERS_HEADER: Final = ("ref", "nir", "last_name", "first_name", "birth_date")
MEMBERS_EXPECTED_HEADER: Final = ("ref", "in_breach", "match", "sources", "kind")

# The chunk size is part of the output's identity: changing it changes the bytes
# written for a given seed. 50k rows keep a worker's memory around 100 MiB.
CHUNK_ROWS: Final = 50_000

_SOURCES_TOML: Final = """\
[[sources]]
id = "viamedis-2024"
title = "Viamedis"
breach_date = "2024-01-29"
description = "Third-party payment operator for complementary health insurers."
path = "viamedis.csv"
encoding = "cp1252"
delimiter = ";"
[sources.columns]
nir = "NIR"
last_name = "NOM"
usage_name = "NOM_USAGE"
first_names = "PRENOMS"
birth_date = "DATE_NAISSANCE"
birth_rank = "RANG_NAISSANCE"
insurer = "ORGANISME"
marital_status = "SITUATION_FAMILIALE"
tp_guarantee = "GARANTIES_TP"

[[sources]]
id = "almerys-2024"
title = "Almerys"
breach_date = "2024-02-05"
description = "Third-party payment operator for complementary health insurers."
path = "almerys.csv"
"""

# --------------------------------------------------------------------------- vocabularies
# Gendered lists: the tests check the NIR sex digit against them, so a name that is
# given to both sexes in France (Dominique, Claude, Camille...) must not appear here.
MALE_FIRST_NAMES: Final = (
    "Jean", "Pierre", "Michel", "André", "Philippe", "Alain", "Bernard", "Jacques",
    "Daniel", "Patrick", "Christophe", "Nicolas", "Stéphane", "Frédéric", "Laurent",
    "Sébastien", "Julien", "Thomas", "Olivier", "Éric", "David", "François", "Jérôme",
    "Mathieu", "Guillaume", "Maxime", "Antoine", "Alexandre", "Romain", "Lucas", "Hugo",
    "Louis", "Léo", "Gabriel", "Raphaël", "Arthur", "Jules", "Adam", "Noé", "Maël",
    "Théo", "Nathan", "Enzo", "Mathis", "Timéo", "Clément", "Baptiste", "Benoît",
    "Hervé", "René", "Gérard", "Henri", "Roger", "Marcel", "Robert", "Raymond",
    "Lucien", "Georges", "Maurice", "Gilbert", "Guy", "Yves", "Joël", "Noël", "Gaël",
    "Loïc", "Jean-Pierre", "Jean-Claude", "Jean-Luc", "Jean-François", "Jean-Marc",
    "Jean-Michel", "Jean-Louis", "Jean-Paul", "Jean-Baptiste", "Pierre-Yves",
    "Marc-Antoine", "Pierre-Louis", "Jean-Yves", "Cédric", "Aurélien", "Fabien",
    "Grégory", "Jérémy", "Kévin", "Mickaël", "Anthony", "Damien", "Florian", "Quentin",
    "Valentin", "Bastien", "Adrien", "Victor", "Émile", "Étienne", "Félix", "Gaspard",
    "Augustin", "Côme", "Anatole", "Léon", "Mohamed", "Karim", "Rachid", "Mehdi",
    "Youssef", "Ibrahim", "Moussa", "Samir", "Farid", "Yannick", "Yann", "Gwénaël",
    "Erwan", "Tristan", "Killian", "Dylan", "Bruno", "Didier", "Thierry", "Pascal",
    "Serge", "Gilles", "Francis", "Régis", "Rémi", "Sylvain", "Thibault", "Vincent",
    "Xavier", "Hubert", "Ludovic", "Arnaud", "Bertrand", "Denis", "Fernand", "Gaston",
    "Marius", "Ulysse", "Aymeric", "Brice", "Lionel", "Matthias", "Nathanaël", "Jordan",
    "Joseph", "Émilien", "Armand", "Ambroise", "Tanguy", "Paul", "Marc", "Luc",
)  # fmt: skip
FEMALE_FIRST_NAMES: Final = (
    "Marie", "Jeanne", "Françoise", "Monique", "Catherine", "Nathalie", "Isabelle",
    "Sylvie", "Christine", "Martine", "Nicole", "Anne", "Sophie", "Valérie", "Sandrine",
    "Véronique", "Stéphanie", "Céline", "Émilie", "Julie", "Aurélie", "Léa", "Manon",
    "Chloé", "Emma", "Inès", "Sarah", "Laura", "Pauline", "Mathilde", "Lucie",
    "Clémence", "Océane", "Maëlle", "Zoé", "Jade", "Louise", "Alice", "Lina", "Rose",
    "Ambre", "Anaïs", "Hélène", "Élodie", "Mélanie", "Lætitia", "Laëtitia",
    "Marie-Hélène", "Marie-Claude", "Marie-Thérèse", "Anne-Marie", "Marie-Christine",
    "Marie-France", "Anne-Sophie", "Marie-Laure", "Geneviève", "Thérèse", "Odette",
    "Simone", "Yvette", "Denise", "Germaine", "Suzanne", "Madeleine", "Paulette",
    "Josiane", "Colette", "Danielle", "Brigitte", "Évelyne", "Chantal", "Agnès",
    "Béatrice", "Bérénice", "Cécile", "Delphine", "Édith", "Éloïse", "Estelle",
    "Fabienne", "Florence", "Gaëlle", "Gwenaëlle", "Héloïse", "Irène", "Joséphine",
    "Justine", "Karine", "Laurence", "Léonie", "Lydie", "Magali", "Maryse", "Mélissa",
    "Morgane", "Noémie", "Noëlle", "Perrine", "Régine", "Solène", "Séverine", "Yasmine",
    "Fatima", "Aïcha", "Khadija", "Nadia", "Leïla", "Myriam", "Ophélie", "Clémentine",
    "Capucine", "Margaux", "Juliette", "Charlotte", "Adèle", "Éléonore", "Anaëlle",
    "Maëlys", "Axelle", "Coralie", "Élise", "Aude", "Bénédicte", "Blandine", "Armelle",
    "Ginette", "Huguette", "Jacqueline", "Micheline", "Renée", "Lucienne", "Raymonde",
    "Annick", "Nadège", "Ségolène", "Gisèle", "Mireille", "Muriel", "Patricia",
    "Sabine", "Corinne", "Virginie", "Audrey", "Elsa", "Zélie", "Maïwenn", "Nolwenn",
    "Clotilde", "Chloë", "Noëmie",
)  # fmt: skip
_SURNAMES: Final = (
    "Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois",
    "Moreau", "Laurent", "Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David",
    "Bertrand", "Morel", "Fournier", "Girard", "Bonnet", "Dupont", "Lambert", "Fontaine",
    "Rousseau", "Vincent", "Müller", "Lefebvre", "Faure", "André", "Mercier", "Blanc",
    "Guérin", "Boyer", "Garnier", "Chevalier", "François", "Legrand", "Gauthier",
    "Garcia", "Perrin", "Robin", "Clément", "Morin", "Nicolas", "Henry", "Roussel",
    "Mathieu", "Gautier", "Masson", "Marchand", "Duval", "Denis", "Dumont", "Marie",
    "Lemaire", "Noël", "Meyer", "Dufour", "Meunier", "Brun", "Blanchard", "Giraud",
    "Joly", "Rivière", "Lucas", "Brunet", "Gaillard", "Barbier", "Arnaud", "Martínez",
    "Gérard", "Roche", "Renard", "Schmitt", "Roy", "Leroux", "Colin", "Vidal", "Caron",
    "Picard", "Roger", "Fabre", "Aubert", "Lemoine", "Renaud", "Dumas", "Lacroix",
    "Olivier", "Philippe", "Bourgeois", "Pierre", "Benoît", "Rey", "Leclerc", "Payet",
    "Rolland", "Leclercq", "Guillaume", "Lecomte", "López", "Jean", "Dupuy", "Guillot",
    "Hubert", "Berger", "Carpentier", "Sánchez", "Dupuis", "Moulin", "Louis",
    "Deschamps", "Huet", "Vasseur", "Pérez", "Boucher", "Fleury", "Royer", "Klein",
    "Jacquet", "Adam", "Paris", "Poirier", "Marty", "Aubry", "Guyot", "Carré", "Charles",
    "Renault", "Charpentier", "Ménard", "Maillard", "Baron", "Bertin", "Bailly", "Hervé",
    "Schneider", "Fernández", "Le Gall", "Collet", "Léger", "Bouvier", "Julien",
    "Prévost", "Millet", "Perrot", "Daniel", "Le Roux", "Cousin", "Germain", "Breton",
    "Besson", "Langlois", "Rémy", "Le Goff", "Pelletier", "Lévêque", "Perrier",
    "Leblanc", "Barré", "Lebrun", "Marchal", "Weber", "Mallet", "Hamon", "Boulanger",
    "Jacob", "Monnier", "Michaud", "Rodríguez", "Guichard", "Gillet", "Étienne",
    "Grondin", "Poulain", "Tessier", "Chevallier", "Collin", "Chauvin", "Da Silva",
    "Bouchet", "Gay", "Lemaître", "Bénard", "Maréchal", "Humbert", "Reynaud", "Antoine",
    "Hoarau", "Perret", "Barthélemy", "Cordier", "Pichon", "Lejeune", "Gilbert", "Lamy",
    "Delaunay", "Pasquier", "Carlier", "Laporte", "Le Bihan", "Le Guen", "Le Floch",
    "Quéré", "Tanguy", "Le Corre", "Riou", "N'Diaye", "Diallo", "Traoré", "Camara",
    "Diop", "Nguyen", "Tran", "Benali", "Belkacem", "Haddad", "Cohen", "Lévy",
    "Dos Santos", "Pereira", "Ferreira", "Rodrigues", "Gonçalves", "Da Costa",
    "Fernandes", "D'Artagnan", "D'Almeida", "D'Angelo", "de La Fontaine", "de La Tour",
    "de Beaumont", "de Saint-Martin", "de Villiers", "du Bellay", "Lebœuf", "Cœur",
    "Strauß", "Schröder", "Jäger", "Köhler", "Muñoz", "Peña", "Çelik", "Le Meur",
    "Le Moal", "Kerbrat", "Le Du", "L'Hermitte", "L'Hôte", "Saint-Jean", "Lenôtre",
    "Bélanger", "Thévenin", "Chênevert", "Gaudin", "Hoareau", "Fontanel", "Aubin",
    "Bouchard", "Cartier", "Delmas", "Ducros", "Escoffier", "Ferrand", "Gimenez",
    "Hébert", "Imbert", "Jourdan", "Lagarde", "Maillot", "Navarro", "Ollivier",
    "Pagès", "Quintin", "Raynaud", "Sabatier", "Texier", "Vial", "Wagner", "Zimmermann",
    "Abadie", "Bastide", "Castel", "Dulac", "Esnault", "Fauré", "Guégan", "Hascoët",
    "Jaouen", "Kervella", "Laborde", "Mazé", "Nédélec", "Ogé", "Pénicaud", "Rouzé",
    "Séguin", "Tournier", "Urbain", "Vergès", "Yvon", "Zobel", "Achard", "Bréhier",
    "Cazenave", "Darrieux", "Espinasse", "Fouché", "Goujon", "Hamel", "Issartel",
    "Jolivet", "Lassalle", "Monfort", "Noblet", "Oudin", "Peyrat", "Ribière", "Soulié",
    "Thibaud", "Vaillant", "Delacroix", "Desmoulins", "Duchêne", "Dumoulin", "Lafont",
    "Larcher", "Lecoq", "Lefort", "Marais", "Mounier", "Paillard", "Pottier", "Ricard",
    "Salaün", "Tiphaine", "Verdier", "Villard", "Watteau", "Ybert", "de Lamarck",
    "de Montfort", "d'Aubigné", "d'Orléans", "Le Hénaff", "Le Bras", "Abgrall",
)  # fmt: skip
# The listed surnames are the frequent ones; the long tail is made of root + suffix
# (Bernot, Girardeau, Le Moulinier...). Without a long tail the people would be
# homonyms far more often than real people are, and a homonym in the other dump
# would add a source to a member's ground truth.
_SURNAME_ROOTS: Final = (
    "Bern", "Mor", "Dur", "Girard", "Bonn", "Lamb", "Font", "Rouss", "Merc", "Blanch",
    "Garn", "Chev", "Gauth", "Perr", "Rob", "Mass", "March", "Duv", "Dum", "Meun",
    "Brun", "Gaill", "Barb", "Arn", "Ren", "Rich", "Car", "Pic", "Fabr", "Aub", "Lem",
    "Bourg", "Guill", "Hub", "Berg", "Moul", "Vass", "Bouch", "Fleur", "Jacqu", "Poir",
    "Charp", "Maill", "Bert", "Bail", "Coll", "Lég", "Bouv", "Mill", "Cous", "Germ",
    "Bret", "Bess", "Pell", "Mall", "Ham", "Boul", "Monn", "Mich", "Gill", "Poul",
    "Tess", "Chauv", "Coud", "Cord", "Pich", "Pasqu", "Carl", "Riv", "Vid", "Roch",
    "Sab", "Tourn", "Verd", "Vill", "Lab", "Dav", "Thib", "Gaud", "Baud", "Chab",
    "Court", "Dub", "Ferr", "Jouv", "Lac", "Mart", "Nad", "Pag", "Rab", "Sauv", "Tard",
    "Vach", "Marc", "Bland", "Chass", "Grav", "Hold", "Jub", "Lomb", "Mén", "Prad",
    "Quer", "Sév", "Tromp", "Vign", "Bréh", "Cler", "Daum", "Esn", "Fouqu", "Gren",
)  # fmt: skip
_SURNAME_SUFFIXES: Final = (
    "in", "et", "ot", "eau", "ard", "ier", "on", "aud", "at", "ault", "el", "ois",
    "oux", "y", "é", "ès", "ereau", "illon", "ac", "ant", "ignac", "ereux",
)  # fmt: skip
_PARTICLES: Final = ("Le ", "Du ", "de ", "Des ")

_INSURERS: Final = (
    "Harmonie Mutuelle", "MGEN", "Malakoff Humanis", "AG2R La Mondiale", "Groupama",
    "MAAF Santé", "Matmut", "Swiss Life", "AXA Santé", "Allianz", "Apivia",
    "Mutuelle Générale", "MACIF Mutualité", "Klesia", "Audiens", "Pro BTP", "Humanis",
    "Mutuelle Bleue", "Solimut", "Mutuelle des Motards", "Intériale", "UNEO",
    "MNT", "Ociane", "Aésio", "Mutuelle d'Ivry", "Alptis", "April Santé",
)  # fmt: skip
# Third-party payment guarantee codes (pharmacy, lab, radiology, medical auxiliaries,
# hospital, optics, dental, audiology, GP, transport, health centres).
_TP_CODES: Final = (
    "PHAR", "LABO", "RADL", "AUXM", "HOSP", "OPTI", "DENT", "AUDI", "MEDE", "TRAN", "CSTE",
)  # fmt: skip
# Marital status: Viamedis spells it out, Almerys stores a one-letter code.
_MARITAL_FR: Final = ("célibataire", "marié(e)", "pacsé(e)", "divorcé(e)", "veuf", "veuve")
_MARITAL_CODE: Final = ("C", "M", "P", "D", "V", "V")
_SINGLE, _MARRIED, _PACS, _DIVORCED, _WIDOWER, _WIDOW = range(6)

# Metropolitan departments (01-95 but 20), heavier where people are.
_BIG_DEPTS: Final = {
    75: 4.0, 13: 3.5, 59: 4.5, 69: 3.3, 92: 3.0, 93: 3.0, 33: 2.9, 62: 2.6, 94: 2.5,
    78: 2.6, 77: 2.5, 91: 2.3, 95: 2.2, 31: 2.5, 44: 2.5, 67: 2.0, 6: 2.0, 76: 2.3,
    34: 2.1, 38: 2.3, 35: 1.9, 57: 1.9, 83: 1.9, 29: 1.7, 74: 1.5, 60: 1.5,
}  # fmt: skip
# Overseas departments: code, communes (3-digit department, 2-digit commune in the NIR).
_OVERSEAS: Final = ((971, 32, 0.6), (972, 34, 0.6), (973, 22, 0.4), (974, 24, 1.2),
                    (975, 2, 0.05), (976, 17, 0.4))  # fmt: skip
# Born abroad: department 99 followed by the INSEE country code.
_COUNTRIES: Final = (
    352, 350, 351, 109, 134, 139, 127, 131, 341, 140, 132, 243, 401, 216, 406, 404,
)  # fmt: skip
# Shares of birthplaces: metropolitan, Corsica (2A, 2B), overseas, abroad.
_P_METRO, _P_CORSICA, _P_OVERSEAS, _P_ABROAD = 0.88, 0.02, 0.035, 0.065
_CORSICA_A, _CORSICA_B = 19, 18  # their value in the key computation

# Birth order numbers: 001-899 for people of the breach, 900-999 for the members who
# are not in it, so that a "not in breach" member can never hit someone by NIR (their
# names and dates come from the breach's own distributions: homonyms happen).
_ORDER_BREACH = (1, 900)
_ORDER_FRESH = (900, 1000)

_FIRST_DAY: Final = date(1925, 1, 1)
_LAST_DAY: Final = date(2023, 12, 31)


def _day(d: date) -> int:
    return d.toordinal() - _FIRST_DAY.toordinal()


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True, slots=True)
class SynthSummary:
    """What a generation wrote: counts only."""

    out: Path
    viamedis_rows: int
    almerys_rows: int
    people: int
    people_in_both: int
    bad_rows: int
    members: int
    members_in_breach: int
    seconds: float

    @property
    def records(self) -> int:
        return self.viamedis_rows + self.almerys_rows

    @property
    def rows_by_source(self) -> dict[str, int]:
        return {VIAMEDIS_ID: self.viamedis_rows, ALMERYS_ID: self.almerys_rows}

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("inf")


def members_size(records: int) -> int:
    """Size of the member file written for a breach of ``records`` rows."""
    return min(max(records // 10, 200), 100_000)


# --------------------------------------------------------------------------- tables


def _quote(value: str, delimiter: str) -> str:
    """csv.QUOTE_MINIMAL for one field."""
    if delimiter in value or '"' in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def _zipf(n: int, exponent: float) -> npt.NDArray[np.float64]:
    weights: npt.NDArray[np.float64] = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return weights / float(weights.sum())


def _objects(values: Sequence[str]) -> ObjArray:
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


@dataclass(frozen=True)
class _Tables:
    """Lookup tables built once per process (a few tens of milliseconds)."""

    # Dates, indexed by days since 1925-01-01.
    dmy: ObjArray
    iso: ObjArray
    year: IntArray
    month: IntArray
    # Places: the 5-character birthplace of the NIR and its value in the key.
    place_text: ObjArray
    place_value: IntArray
    place_p: npt.NDArray[np.float64]
    place_corsica: BoolArray
    place_pre1976: ObjArray  # Corsica before 1976 was department 20
    # First names: male then female; and surnames.
    first: ObjArray
    first_upper: ObjArray
    n_male: int
    male_p: npt.NDArray[np.float64]
    female_p: npt.NDArray[np.float64]
    surnames: ObjArray
    surname_p: npt.NDArray[np.float64]
    # Per-source renderings, empty value last.
    insurer_v: ObjArray
    insurer_a: ObjArray
    tp_v: ObjArray
    tp_a: ObjArray
    marital_v: ObjArray
    marital_a: ObjArray


@cache
def _tables() -> _Tables:
    n_days = _day(_LAST_DAY) + 1
    days = [date.fromordinal(_FIRST_DAY.toordinal() + i) for i in range(n_days)]
    dmy = _objects([d.strftime("%d/%m/%Y") for d in days])
    iso = _objects([d.isoformat() for d in days])
    year = np.array([d.year for d in days], dtype=np.int64)
    month = np.array([d.month for d in days], dtype=np.int64)

    texts: list[str] = []
    values: list[int] = []
    probs: list[float] = []
    corsica: list[bool] = []
    metro = [d for d in range(1, 96) if d != 20]
    metro_w = np.array([_BIG_DEPTS.get(d, 0.8) for d in metro])
    metro_w = metro_w / metro_w.sum() * _P_METRO
    communes = 600  # enough spread; real departments have 200 to 900 communes
    for dept, w in zip(metro, metro_w, strict=True):
        for commune in range(1, communes + 1):
            texts.append(f"{dept:02d}{commune:03d}")
            values.append(dept * 1000 + commune)
            probs.append(w / communes)
            corsica.append(False)
    for text, value in (("2A", _CORSICA_A), ("2B", _CORSICA_B)):
        for commune in range(1, 301):
            texts.append(f"{text}{commune:03d}")
            values.append(value * 1000 + commune)
            probs.append(_P_CORSICA / 2 / 300)
            corsica.append(True)
    overseas_total = sum(w for _, _, w in _OVERSEAS)
    for dept, n_communes, w in _OVERSEAS:
        for commune in range(1, n_communes + 1):
            texts.append(f"{dept}{commune:02d}")
            values.append(dept * 100 + commune)
            probs.append(_P_OVERSEAS * w / overseas_total / n_communes)
            corsica.append(False)
    for country in _COUNTRIES:
        texts.append(f"99{country:03d}")
        values.append(99_000 + country)
        probs.append(_P_ABROAD / len(_COUNTRIES))
        corsica.append(False)
    place_p = np.array(probs)
    place_pre1976 = _objects(
        ["20" + t[2:] if c else t for t, c in zip(texts, corsica, strict=True)]
    )

    first = MALE_FIRST_NAMES + FEMALE_FIRST_NAMES
    surnames = _all_surnames()

    tp_combos = _tp_combinations()
    insurers = list(_INSURERS) + [""]
    return _Tables(
        dmy=dmy,
        iso=iso,
        year=year,
        month=month,
        place_text=_objects(texts),
        place_value=np.array(values, dtype=np.int64),
        place_p=place_p / place_p.sum(),
        place_corsica=np.array(corsica),
        place_pre1976=place_pre1976,
        first=_objects(first),
        first_upper=_objects([n.upper() for n in first]),
        n_male=len(MALE_FIRST_NAMES),
        male_p=_zipf(len(MALE_FIRST_NAMES), 0.35),
        female_p=_zipf(len(FEMALE_FIRST_NAMES), 0.35),
        surnames=_objects(surnames),
        surname_p=_zipf(len(surnames), 0.55),
        insurer_v=_objects(insurers),
        insurer_a=_objects([_quote(i, ",") for i in insurers]),
        tp_v=_objects(["/".join(c) for c in tp_combos] + [""]),
        tp_a=_objects([_quote(",".join(c), ",") for c in tp_combos] + [""]),
        marital_v=_objects(list(_MARITAL_FR) + [""]),
        marital_a=_objects(list(_MARITAL_CODE) + [""]),
    )


def _all_surnames() -> list[str]:
    """The listed surnames, then the long tail in a fixed shuffled order, no two
    alike once case, accents and separators are folded away."""
    rng = np.random.default_rng(1793)
    derived = [root + suffix for root in _SURNAME_ROOTS for suffix in _SURNAME_SUFFIXES]
    derived = [derived[i] for i in rng.permutation(len(derived)).tolist()]
    particle = rng.random(len(derived))
    for i, name in enumerate(derived):
        if particle[i] < 0.08:
            derived[i] = _PARTICLES[i % len(_PARTICLES)] + name
    names: list[str] = []
    seen: set[str] = set()
    for name in list(_SURNAMES) + derived:
        folded = "".join(c for c in _strip_accents(name).upper() if c.isalpha())
        if folded not in seen:
            seen.add(folded)
            names.append(name)
    return names


def _tp_combinations() -> list[tuple[str, ...]]:
    rng = np.random.default_rng(20240129)
    combos: set[tuple[str, ...]] = {("PHAR",), ("PHAR", "LABO"), ("PHAR", "LABO", "RADL")}
    while len(combos) < 48:
        size = int(rng.integers(2, len(_TP_CODES) + 1))
        picked = sorted(rng.choice(len(_TP_CODES), size=size, replace=False).tolist())
        combos.add(tuple(_TP_CODES[i] for i in picked))
    return sorted(combos, key=lambda c: (len(c), c))


# --------------------------------------------------------------------------- people


@dataclass
class _Identities:
    """Column arrays of people as drawn, each with a NIR of their own."""

    male: BoolArray
    dob: IntArray  # days since 1925-01-01
    nir: list[str]  # 15 characters
    last: ObjArray  # birth name, natural case
    usage: ObjArray  # usage (married) name or ""
    first_idx: IntArray  # first given name, index into _Tables.first


def _draw_dates(rng: np.random.Generator, n: int, lo: date, hi: date) -> IntArray:
    return rng.integers(_day(lo), _day(hi) + 1, size=n, dtype=np.int64)


def _draw_first(rng: np.random.Generator, male: BoolArray) -> IntArray:
    t = _tables()
    n = len(male)
    m = rng.choice(t.n_male, size=n, p=t.male_p)
    f = rng.choice(len(t.first) - t.n_male, size=n, p=t.female_p) + t.n_male
    return np.where(male, m, f).astype(np.int64)


def _draw_surnames(
    rng: np.random.Generator, n: int, pool: ObjArray, p: npt.NDArray[np.float64]
) -> ObjArray:
    names: ObjArray = pool[rng.choice(len(pool), size=n, p=p)]
    # Some double-barrelled names (Martin-Dupont, Le Gall Moreau).
    double = np.flatnonzero(rng.random(n) < 0.03)
    if len(double):
        second = pool[rng.choice(len(pool), size=len(double), p=p)].tolist()
        seps = np.where(rng.random(len(double)) < 0.8, "-", " ").tolist()
        names[double] = [
            f"{a}{s}{b}" for a, s, b in zip(names[double].tolist(), seps, second, strict=True)
        ]
    return names


def _nir_strings(
    rng: np.random.Generator, male: BoolArray, dob: IntArray, order_range: tuple[int, int]
) -> list[str]:
    """Valid NIRs consistent with sex and date of birth."""
    t = _tables()
    n = len(male)
    place = rng.choice(len(t.place_p), size=n, p=t.place_p)
    order = rng.integers(order_range[0], order_range[1], size=n, dtype=np.int64)
    sex = np.where(male, 1, 2).astype(np.int64)
    body = (
        sex * 10**12
        + (t.year[dob] % 100) * 10**10
        + t.month[dob] * 10**8
        + t.place_value[place] * 10**3
        + order
    )
    key = 97 - body % 97
    # The first digit is 1 or 2, so the number always has 15 digits.
    nirs = list(map(str, (body * 100 + key).tolist()))
    # Corsica: the key is computed with 19/18 but the letters are what is written,
    # and people born there before 1976 have department 20.
    for i in np.flatnonzero(t.place_corsica[place]).tolist():
        before_1976 = t.year[dob[i]] < 1976
        text = t.place_pre1976[place[i]] if before_1976 else t.place_text[place[i]]
        if before_1976:
            # Department 20 is not 19/18: the key must be recomputed on it.
            n13 = int(nirs[i][:5] + text + nirs[i][10:13])
            nirs[i] = f"{nirs[i][:5]}{text}{nirs[i][10:13]}{97 - n13 % 97:02d}"
        else:
            nirs[i] = nirs[i][:5] + text + nirs[i][10:]
    return nirs


def _draw_identities(
    rng: np.random.Generator,
    n: int,
    dob: IntArray,
    *,
    surnames: ObjArray,
    surname_p: npt.NDArray[np.float64],
    order_range: tuple[int, int],
) -> _Identities:
    t = _tables()
    male = rng.random(n) < 0.49
    first_idx = _draw_first(rng, male)
    last = _draw_surnames(rng, n, surnames, surname_p)
    usage = np.full(n, "", dtype=object)
    # Many married women use their spouse's name.
    married = (~male) & (t.year[dob] <= 2000) & (rng.random(n) < 0.45)
    idx = np.flatnonzero(married)
    if len(idx):
        usage[idx] = _draw_surnames(rng, len(idx), surnames, surname_p)
    nir = _nir_strings(rng, male, dob, order_range)
    return _Identities(male=male, dob=dob, nir=nir, last=last, usage=usage, first_idx=first_idx)


def _given_names(
    rng: np.random.Generator, first_idx: IntArray, male: BoolArray
) -> tuple[ObjArray, ObjArray]:
    """The first-names field, as Viamedis (upper case) and Almerys (natural) write it.

    Most people have one given name; some have two or three, space or comma
    separated. A hyphenated composite (Jean-Pierre) is one given name.
    """
    t = _tables()
    viamedis: ObjArray = t.first_upper[first_idx]
    almerys: ObjArray = t.first[first_idx]
    n = len(first_idx)
    extra = rng.choice(3, size=n, p=[0.72, 0.2, 0.08])
    multi = np.flatnonzero(extra > 0)
    if len(multi) == 0:
        return viamedis, almerys
    more1 = _draw_first(rng, male[multi])
    more2 = _draw_first(rng, male[multi])
    comma = (rng.random(len(multi)) < 0.3).tolist()
    names = t.first
    v_out: list[str] = []
    a_out: list[str] = []
    for j, (i, n_extra) in enumerate(zip(multi.tolist(), extra[multi].tolist(), strict=True)):
        parts = [names[first_idx[i]], names[more1[j]]]
        if n_extra == 2:
            parts.append(names[more2[j]])
        parts = list(dict.fromkeys(parts))  # no CLÉMENCE CLÉMENCE
        if comma[j]:
            v_out.append(",".join(parts).upper())
            a_out.append(_quote(", ".join(parts), ","))
        else:
            v_out.append(" ".join(parts).upper())
            a_out.append(" ".join(parts))
    viamedis[multi] = v_out
    almerys[multi] = a_out
    return viamedis, almerys


# --------------------------------------------------------------------------- chunk


@dataclass(frozen=True)
class _Chunk:
    viamedis: bytes
    almerys: bytes
    viamedis_rows: int
    almerys_rows: int
    people: int
    people_in_both: int
    bad_rows: int
    members: list[str]  # "nir;last_name;first_name;birth_date", no ref yet
    expected: list[str]  # "in_breach,match,sources", no ref yet
    members_in_breach: int


_KIDS_P = np.array([0.68, 0.12, 0.11, 0.06, 0.03])  # children per insured person
_V_ONLY, _A_ONLY, _BOTH = 0, 1, 2
_MEMBERSHIP_P = np.array([0.4, 0.4, 0.2])


def _families(rng: np.random.Generator, target_rows: int) -> tuple[IntArray, IntArray]:
    """Children count and source membership per family, adding up to target_rows rows."""
    mean_rows = float((1 + _KIDS_P @ np.arange(len(_KIDS_P))) * (1 + _MEMBERSHIP_P[_BOTH]))
    estimate = int(target_rows / mean_rows * 1.1) + 16
    while True:
        kids = rng.choice(len(_KIDS_P), size=estimate, p=_KIDS_P).astype(np.int64)
        membership = rng.choice(3, size=estimate, p=_MEMBERSHIP_P).astype(np.int64)
        rows = np.cumsum((1 + kids) * np.where(membership == _BOTH, 2, 1))
        if rows[-1] >= target_rows:
            break
        estimate *= 2
    n_full = int(np.searchsorted(rows, target_rows, side="right"))
    rest = target_rows - (int(rows[n_full - 1]) if n_full else 0)
    # Fill what is left with single people in a single source.
    kids = np.concatenate([kids[:n_full], np.zeros(rest, dtype=np.int64)])
    membership = np.concatenate(
        [membership[:n_full], rng.integers(0, 2, size=rest, dtype=np.int64)]
    )
    return kids, membership


def _chunk_bounds(records: int, index: int) -> tuple[int, int]:
    return index * CHUNK_ROWS, min(records, (index + 1) * CHUNK_ROWS)


def _quota(total: int, records: int, start: int, end: int) -> int:
    """This chunk's share of ``total``, proportional to its rows, summing exactly."""
    return total * end // records - total * start // records


@dataclass
class _Population:
    """The people of one chunk, in families, before they are written out."""

    ident: _Identities
    nir: ObjArray  # children carry their holder's
    rank: IntArray  # birth rank: 2 for the second of twins
    family: IntArray  # family of each person
    member_of: IntArray  # _V_ONLY, _A_ONLY or _BOTH, per person
    first_names_v: ObjArray
    first_names_a: ObjArray
    marital: IntArray
    insurer_v: IntArray  # per family: one contract covers the family
    insurer_a: IntArray
    tp_v: IntArray
    tp_a: IntArray
    # People with a row the index cannot match by both keys (a deliberately bad row,
    # a missing date): the member file never relies on them.
    spoiled: BoolArray

    @property
    def dob(self) -> IntArray:
        return self.ident.dob


def _draw_population(rng: np.random.Generator, rows: int) -> _Population:
    t = _tables()
    # Families: an insured person (holder of the NIR) and 0-4 children under it.
    kids, membership = _families(rng, rows)
    n_fam = len(kids)
    size = 1 + kids
    n = int(size.sum())
    family = np.repeat(np.arange(n_fam), size)
    head = np.repeat(np.cumsum(size) - size, size)  # index of each person's holder
    is_child = np.arange(n) != head
    children = np.flatnonzero(is_child)

    # Holders with children were born 1960-2002; children are minors or students in
    # 2024: born from 1998, at least 18 years after their parent.
    dob = _draw_dates(rng, n, _FIRST_DAY, date(2007, 12, 31))
    parents = np.flatnonzero((~is_child) & (kids[family] > 0))
    dob[parents] = _draw_dates(rng, len(parents), date(1960, 1, 1), date(2002, 12, 31))
    parent_dob = dob[head[children]]
    lo = np.maximum(parent_dob + 18 * 365 + 5, _day(date(1998, 1, 1)))
    hi = np.minimum(parent_dob + 50 * 365, _day(_LAST_DAY))
    dob[children] = lo + (rng.random(len(children)) * (hi - lo + 1)).astype(np.int64)
    rank = np.ones(n, dtype=np.int64)
    # Twins: the last two children of some families share their birth date.
    twin_fams = np.flatnonzero((kids >= 2) & (rng.random(n_fam) < 0.1))
    last = np.cumsum(size)[twin_fams] - 1
    dob[last] = dob[last - 1]
    rank[last] = 2

    ident = _draw_identities(
        rng, n, dob, surnames=t.surnames, surname_p=t.surname_p, order_range=_ORDER_BREACH
    )
    # Children: the holder's NIR, the holder's family name, their own first names.
    nir = _objects(ident.nir)
    nir[children] = nir[head[children]]
    family_name = np.where(ident.usage != "", ident.usage, ident.last)
    ident.last[children] = family_name[head[children]]
    ident.usage[children] = ""
    first_names_v, first_names_a = _given_names(rng, ident.first_idx, ident.male)

    insurer_v = rng.integers(0, len(_INSURERS), size=n_fam)
    tp_v = rng.integers(0, len(t.tp_v) - 1, size=n_fam)
    # People in both dumps often hold two contracts (or changed insurer).
    insurer_a = np.where(
        rng.random(n_fam) < 0.4, insurer_v, rng.integers(0, len(_INSURERS), size=n_fam)
    )
    tp_a = np.where(rng.random(n_fam) < 0.5, tp_v, rng.integers(0, len(t.tp_a) - 1, size=n_fam))
    return _Population(
        ident=ident,
        nir=nir,
        rank=rank,
        family=family,
        member_of=membership[family],
        first_names_v=first_names_v,
        first_names_a=first_names_a,
        marital=_marital(rng, ident, is_child),
        insurer_v=insurer_v,
        insurer_a=insurer_a,
        tp_v=tp_v,
        tp_a=tp_a,
        spoiled=np.zeros(n, dtype=bool),
    )


def _viamedis_rows(rng: np.random.Generator, pop: _Population) -> tuple[str, int, int]:
    """The Viamedis rows of a population (CRLF, ';', upper case, DD/MM/YYYY): text,
    row count, bad rows."""
    t = _tables()
    people = np.flatnonzero(pop.member_of != _A_ONLY)
    if len(people) == 0:
        return "", 0, 0
    family = pop.family[people]
    cols = [
        pop.nir[people].tolist(),
        [s.upper() for s in pop.ident.last[people].tolist()],
        [s.upper() for s in pop.ident.usage[people].tolist()],
        pop.first_names_v[people].tolist(),
        t.dmy[pop.dob[people]].tolist(),
        _ranks(rng, pop.rank[people]),
        t.insurer_v[_blank(rng, pop.insurer_v[family], 0.02, len(t.insurer_v) - 1)].tolist(),
        t.marital_v[_blank(rng, pop.marital[people], 0.08, len(t.marital_v) - 1)].tolist(),
        t.tp_v[_blank(rng, pop.tp_v[family], 0.03, len(t.tp_v) - 1)].tolist(),
    ]
    bad = _spoil(rng, cols, people, pop, iso=False)
    return "\r\n".join(map(";".join, zip(*cols, strict=True))) + "\r\n", len(people), bad


def _almerys_rows(rng: np.random.Generator, pop: _Population) -> tuple[str, int, int]:
    """The Almerys rows of a population (LF, ',', natural case, ISO dates, some spaced
    NIRs, minimal quoting): text, row count, bad rows."""
    t = _tables()
    people = np.flatnonzero(pop.member_of != _V_ONLY)
    if len(people) == 0:
        return "", 0, 0
    family = pop.family[people]
    nir = pop.nir[people].tolist()
    cols = [
        nir,
        pop.ident.last[people].tolist(),  # names never hold a comma or a quote
        pop.ident.usage[people].tolist(),
        pop.first_names_a[people].tolist(),  # quoted when comma-separated
        t.iso[pop.dob[people]].tolist(),
        _ranks(rng, pop.rank[people]),
        t.insurer_a[_blank(rng, pop.insurer_a[family], 0.02, len(t.insurer_a) - 1)].tolist(),
        t.marital_a[_blank(rng, pop.marital[people], 0.08, len(t.marital_a) - 1)].tolist(),
        t.tp_a[_blank(rng, pop.tp_a[family], 0.03, len(t.tp_a) - 1)].tolist(),
    ]
    bad = _spoil(rng, cols, people, pop, iso=True)
    # Some NIRs are written the way the carte Vitale prints them.
    for i in np.flatnonzero(rng.random(len(nir)) < 0.25).tolist():
        s = nir[i]
        nir[i] = f"{s[0]} {s[1:3]} {s[3:5]} {s[5:7]} {s[7:10]} {s[10:13]} {s[13:]}"
    return "\n".join(map(",".join, zip(*cols, strict=True))) + "\n", len(people), bad


def _make_chunk(task: tuple[int, int, int]) -> _Chunk:
    """One chunk of both dumps and of the member file; runs in a worker process."""
    seed, index, records = task
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    start, end = _chunk_bounds(records, index)
    pop = _draw_population(rng, end - start)
    viamedis, viamedis_rows, bad_v = _viamedis_rows(rng, pop)
    almerys, almerys_rows, bad_a = _almerys_rows(rng, pop)
    members, expected, in_breach = _chunk_members(rng, records, start, end, pop)
    return _Chunk(
        viamedis=viamedis.encode("cp1252"),
        almerys=almerys.encode("utf-8"),
        viamedis_rows=viamedis_rows,
        almerys_rows=almerys_rows,
        people=len(pop.member_of),
        people_in_both=int((pop.member_of == _BOTH).sum()),
        bad_rows=bad_v + bad_a,
        members=members,
        expected=expected,
        members_in_breach=in_breach,
    )


def _marital(rng: np.random.Generator, ident: _Identities, is_child: BoolArray) -> IntArray:
    """Marital status, consistent with age, usage name and sex (veuf/veuve)."""
    t = _tables()
    dob = ident.dob
    n = len(dob)
    status = rng.choice(5, size=n, p=[0.36, 0.34, 0.1, 0.12, 0.08]).astype(np.int64)
    young = t.year[dob] > 2002
    status[young] = _SINGLE
    used = ident.usage != ""
    status[used] = np.where(rng.random(int(used.sum())) < 0.8, _MARRIED, _DIVORCED)
    widowed = status == _WIDOWER
    status[widowed & ~ident.male] = _WIDOW
    status[is_child] = _SINGLE
    return status


_RANK_TEXT: Final = _objects(["", "1", "2"])


def _ranks(rng: np.random.Generator, rank: IntArray) -> list[str]:
    """Birth rank as written, sometimes missing."""
    return list(_RANK_TEXT[np.where(rng.random(len(rank)) < 0.02, 0, rank)].tolist())


def _blank(rng: np.random.Generator, idx: IntArray, share: float, empty: int) -> IntArray:
    """Indices into a per-source table whose last entry is the empty value."""
    return np.where(rng.random(len(idx)) < share, empty, idx)


_BAD_DATES_DMY: Final = ("31/02/{y}", "30/02/{y}", "31/04/{y}", "31/11/{y}", "{y}")
_BAD_DATES_ISO: Final = ("{y}-02-31", "{y}-02-30", "{y}-06-31", "{y}-09-31", "{y}")


def _spoil(
    rng: np.random.Generator,
    cols: list[list[str]],
    people: IntArray,
    pop: _Population,
    *,
    iso: bool,
) -> int:
    """Break about 0.1% of the rows (wrong NIR key, impossible date) and blank a few
    dates of birth; mark their people so the member file never relies on them."""
    n_rows = len(people)
    if n_rows == 0:
        return 0
    t = _tables()
    n_bad = max(2, round(n_rows * 0.001)) if n_rows >= 100 else 0
    n_blank = int(rng.binomial(n_rows, 0.0002))
    rows = rng.choice(n_rows, size=min(n_rows, n_bad + n_blank), replace=False).tolist()
    formats = _BAD_DATES_ISO if iso else _BAD_DATES_DMY
    nir, birth = cols[0], cols[4]
    for k, row in enumerate(rows):
        pop.spoiled[people[row]] = True
        if k >= n_bad:
            birth[row] = ""
        elif k % 2 == 0:
            s = nir[row]
            nir[row] = f"{s[:13]}{int(s[13:]) % 97 + 1:02d}"  # any other key is wrong
        else:
            year = int(t.year[pop.dob[people[row]]])
            birth[row] = formats[int(rng.integers(len(formats)))].format(y=year)
    return n_bad


# --------------------------------------------------------------------------- members


def _strip_accents(text: str) -> str:
    text = text.replace("æ", "ae").replace("Æ", "AE").replace("œ", "oe").replace("Œ", "OE")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _typed_name(name: str, r: Sequence[float]) -> str:
    """A name as a clerk might have typed it: other case, accents, separators.

    ``r`` holds four uniform draws, taken in bulk by the caller (a numpy call per
    draw would cost more than the rest of this function).
    """
    if r[0] < 0.3:
        name = _strip_accents(name)
    elif r[0] < 0.4:
        name = name.replace("é", "e").replace("è", "e")
    if r[1] < 0.2 and ("-" in name or " " in name):
        name = name.replace("-", " ") if "-" in name else name.replace(" ", "-")
    if r[2] < 0.15 and "'" in name:
        name = name.replace("'", "’" if r[3] < 0.5 else " ")
    if r[3] < 0.25:
        return name.upper()
    if r[3] < 0.45:
        return name.lower()
    return name


def _typed_nir(nir: str, r: float, lower: float) -> str:
    if lower < 0.3 and nir[5:7] in ("2A", "2B"):
        nir = nir.lower()
    if r < 0.25:
        return f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} {nir[10:13]} {nir[13:]}"
    if r < 0.35:
        return f"{nir[0]}.{nir[1:3]}.{nir[3:5]}.{nir[5:7]}.{nir[7:10]}.{nir[10:13]}.{nir[13:]}"
    return nir


def _member_rows(
    rng: np.random.Generator,
    people: Sequence[int],
    ident: _Identities,
    nir: ObjArray,
    with_nir: Sequence[bool],
) -> list[str]:
    """Member-file rows (without ref) for these people, typed with variants."""
    t = _tables()
    dob = ident.dob
    draws: list[list[float]] = rng.random((len(people), 12)).tolist()
    rows: list[str] = []
    for i, has_nir, r in zip(people, with_nir, draws, strict=True):
        usage = ident.usage[i]
        last = usage if usage and r[0] < 0.6 else ident.last[i]
        first = t.first[ident.first_idx[i]]
        birth = t.dmy[dob[i]] if r[1] < 0.5 else t.iso[dob[i]]
        nir_text = _typed_nir(nir[i], r[2], r[3]) if has_nir else ""
        rows.append(f"{nir_text};{_typed_name(last, r[4:8])};{_typed_name(first, r[8:12])};{birth}")
    return rows


_SOURCES_OF: Final = {
    _V_ONLY: VIAMEDIS_ID,
    _A_ONLY: ALMERYS_ID,
    _BOTH: f"{VIAMEDIS_ID}|{ALMERYS_ID}",
}


# Kinds of member rows, one per member of the breach, with the share of those members
# each gets. The first five are typed so that an exact key still matches (the
# equivalences of docs/design.md §3): their level is strong when the row has a NIR,
# else weak. The others carry one difference of §3's similar matches, and no NIR (it
# would match strong): their level is similar, and KIND_DIFFERENCE names the
# `differences` entry the answer should carry. Members outside the breach: "absent".
EXACT_KINDS: Final = (
    "exact", "accents_case_separators", "nir_spacing", "date_dmy", "several_given_names",
)  # fmt: skip
KIND_DIFFERENCE: Final[Mapping[str, str]] = {
    "compound_short": "name_part",  # Jean for JEAN-PIERRE
    "other_given_name": "name_part",  # Pierre for JEAN PIERRE MARIE
    **{f"last_name_{edit}": "spelling" for edit in EDITS},  # one edit, after folding
    **{f"first_name_{edit}": "spelling" for edit in EDITS},
    "sound_alike": "spelling",  # LEFEUVRE for LEFEBVRE, in the last or first name
    "last_name_part": "name_part",  # Dupont for DUPONT-MARTIN
    "last_name_whole": "name_part",  # DUPONT MARTIN for DUPONT (usage name MARTIN or none)
    "names_swapped": "names_swapped",
    "day_month_swapped": "day_month_swapped",
}
MEMBER_KINDS: Final = (*EXACT_KINDS, *KIND_DIFFERENCE, "absent")
_EXACT_SHARES: Final = (0.36, 0.08, 0.08, 0.07, 0.07)
_SIMILAR_SHARE: Final = (1.0 - sum(_EXACT_SHARES)) / (len(KIND_DIFFERENCE) + 0.5)
# Sound-alikes get one and a half shares: their target is measured on its own.
_KIND_P: Final = np.array(
    [*_EXACT_SHARES]
    + [_SIMILAR_SHARE * (1.5 if k == "sound_alike" else 1.0) for k in KIND_DIFFERENCE]
)
_KINDS_IN_BREACH: Final = (*EXACT_KINDS, *KIND_DIFFERENCE)
_NIR_LAYOUTS: Final = (
    "{0} {1} {2} {3} {4} {5} {6}", "{0}.{1}.{2}.{3}.{4}.{5}.{6}", "{0}-{1}-{2}-{3}-{4}-{5}-{6}",
    "{0}\u00a0{1}\u00a0{2}\u00a0{3}\u00a0{4}\u00a0{5}\u00a0{6}", "{0}{1}{2}{3}{4}{5} {6}",
)  # fmt: skip

MemberRow = tuple[str, str, str, str]  # nir, last_name, first_name, birth_date as typed


@cache
def _surname_folds() -> frozenset[str]:
    return frozenset(fold(name) for name in _tables().surnames.tolist())


def _given(pop: _Population, i: int) -> list[str]:
    """The given names of the first-names field, in order (no given name holds a space
    or a comma; the Almerys form is quoted when comma-separated)."""
    return str(pop.first_names_a[i]).strip('"').replace(",", " ").split()


def _retyped(name: str, r: Sequence[float]) -> str:
    """Another way of writing `name` that folds to the same letters."""
    typed = _typed_name(name, r)
    if typed == name:
        typed = name.upper() if name != name.upper() else name.lower()
    return typed


def _spaced_nir(nir: str, r: float, lower: float) -> str:
    """The NIR with separators (spaces, dots, hyphens, non-breaking spaces)."""
    if lower < 0.3:
        nir = nir.lower()
    parts = (nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:])
    return _NIR_LAYOUTS[min(int(r * len(_NIR_LAYOUTS)), len(_NIR_LAYOUTS) - 1)].format(*parts)


def _case(name: str, r: float) -> str:
    return name.lower() if r < 0.2 else name.title() if r < 0.4 else name


def _variant(kind: str, pop: _Population, i: int, r: Sequence[float]) -> MemberRow | None:
    """Person `i` typed with one difference of `kind` (12 draws in ``r``), or None when
    this person does not have what the kind needs (two given names, a double name...)."""
    t = _tables()
    birth_name, usage = str(pop.ident.last[i]), str(pop.ident.usage[i])
    last = usage if usage and r[0] < 0.6 else birth_name
    given = _given(pop, i)
    first = given[0]
    iso = str(t.iso[pop.dob[i]])
    when = str(t.dmy[pop.dob[i]]) if r[1] < 0.5 else iso
    if kind in EXACT_KINDS:
        return _exact_variant(kind, str(pop.nir[i]), last, given, iso, r)
    last_folds = {fold(name) for name in (birth_name, usage) if name}
    given_folds = {fold(name) for name in given}
    made: str | None
    if kind == "compound_short":
        parts = first.split("-")
        made = parts[0] if r[2] < 0.7 else parts[-1]
        ok = len(parts) > 1 and fold(made) not in given_folds
        return ("", last, made, when) if ok else None
    if kind == "other_given_name":
        others = [g for g in given[1:] if fold(g) != fold(first)]
        return ("", last, others[int(r[2] * len(others))], when) if others else None
    if kind == "sound_alike" and r[2] < 0.7 or kind.startswith("last_name_") and kind[10:] in EDITS:
        made = sound_alike(fold(last), r[3:5]) if kind == "sound_alike" else \
            one_edit(fold(last), kind[10:], r[3:5])
        ok = made is not None and made not in last_folds
        return ("", _case(made, r[5]), first, when) if ok and made else None
    if kind == "sound_alike" or kind.startswith("first_name_"):
        made = sound_alike(fold(first), r[3:5]) if kind == "sound_alike" else \
            one_edit(fold(first), kind[11:], r[3:5])
        ok = made is not None and made not in given_folds
        return ("", last, _case(made, r[5]), when) if ok and made else None
    if kind == "last_name_part":
        halves = split_double(birth_name, _surname_folds()) or (
            split_double(usage, _surname_folds()) if usage else None)
        if halves is None:
            return None
        made = halves[0] if r[2] < 0.5 else halves[1]
        return ("", made, first, when) if fold(made) not in last_folds else None
    if kind == "last_name_whole":
        spouse = usage or str(t.surnames[int(r[2] * len(t.surnames))])
        made = f"{birth_name}{' ' if r[3] < 0.5 else '-'}{spouse}"
        return ("", made, first, when) if fold(made) not in last_folds else None
    if kind == "names_swapped":
        return ("", first, last, when) if fold(first) != fold(last) else None
    if kind == "day_month_swapped":
        swapped = swap_day_month(iso)
        if swapped is None:
            return None
        y, m, d = swapped.split("-")
        return ("", last, first, swapped if r[2] < 0.5 else f"{d}/{m}/{y}")
    raise ValueError(f"unknown member kind {kind!r}")


def _exact_variant(
    kind: str, nir: str, last: str, given: list[str], iso: str, r: Sequence[float]
) -> MemberRow | None:
    first = given[0]
    if kind == "exact":  # as the breach writes it
        return (nir if r[2] < 0.6 else "", last, first, iso)
    if kind == "accents_case_separators":
        return ("", _retyped(last, r[3:7]), _retyped(first, r[7:11]), iso)
    if kind == "nir_spacing":
        return (_spaced_nir(nir, r[2], r[3]), last, first, iso)
    if kind == "date_dmy":
        return ("", last, first, f"{iso[8:]}/{iso[5:7]}/{iso[:4]}")
    if len(given) < 2:  # several_given_names: the whole field, or its first two names
        return None
    kept = given if len(given) == 2 or r[2] < 0.5 else given[:2]
    typed = (" ", ", ", ",")[min(int(r[3] * 3), 2)].join(kept)
    return ("", last, typed.upper() if r[4] < 0.3 else typed, iso)


def _twins(pop: _Population) -> BoolArray:
    """Twins share a date of birth and a family name: a name typed differently for one
    of them could be the other's exactly, so they never carry a similar-level kind."""
    second: BoolArray = pop.rank == 2
    twin = second.copy()
    twin[:-1] |= second[1:]
    return twin


def _breach_members(
    rng: np.random.Generator, pop: _Population, count: int
) -> tuple[list[str], list[str]]:
    """`count` people of the breach, each typed with one kind: rows and ground truth.

    Kinds are dealt by share; each takes the next people, in a random order, who have
    what it needs. What a small chunk cannot fill goes to `exact`, which anyone fits."""
    if count == 0:
        return [], []
    candidates = rng.permutation(np.flatnonzero(~pop.spoiled)).tolist()
    quotas = dict(zip(_KINDS_IN_BREACH, rng.multinomial(count, _KIND_P).tolist(), strict=True))
    draws: list[list[float]] = rng.random((count, 12)).tolist()
    twin = _twins(pop).tolist()
    used: set[int] = set()
    rows: list[str] = []
    expected: list[str] = []

    def take(kind: str, i: int) -> bool:
        made = _variant(kind, pop, i, draws[len(rows)])
        if made is None:
            return False
        nir, last, first, when = made
        level = "similar" if kind in KIND_DIFFERENCE else "strong" if nir else "weak"
        rows.append(f"{nir};{last};{first};{when}")
        expected.append(f"true,{level},{_SOURCES_OF[int(pop.member_of[i])]},{kind}")
        used.add(i)
        return True

    short = 0
    for kind in reversed(_KINDS_IN_BREACH):  # `exact` last
        wanted = quotas[kind] + (short if kind == "exact" else 0)
        for i in candidates:
            if wanted == 0:
                break
            if i in used or (twin[i] and kind in KIND_DIFFERENCE):
                continue
            wanted -= take(kind, i)
        for n in range(wanted if kind == "exact" else 0):  # fewer people than members
            take(kind, candidates[n % len(candidates)])
        short += wanted if kind != "exact" else 0
    return rows, expected


def _outside_nir(nir: str) -> str:
    """The NIR with a birth order number that no one in the breach has, and its key."""
    body = f"{nir[:10]}{_ORDER_FRESH[0] + int(nir[10:13]) % 100:03d}"
    digits = body[:5] + {"2A": "19", "2B": "18"}.get(body[5:7], body[5:7]) + body[7:]
    return f"{body}{97 - int(digits) % 97:02d}"


def _absent_members(rng: np.random.Generator, count: int) -> list[str]:
    """`count` people who are not in the breach, drawn the way its people are (names,
    dates, families: homonyms happen), typed like an insurer's file types them."""
    if count == 0:
        return []
    others = _draw_population(rng, 2 * count + 16)
    people = len(others.member_of)
    picked = rng.choice(people, size=count, replace=count > people).tolist()
    nir = _objects([_outside_nir(str(s)) for s in others.nir.tolist()])
    return _member_rows(rng, picked, others.ident, nir, (rng.random(count) < 0.85).tolist())


def _chunk_members(
    rng: np.random.Generator,
    records: int,
    start: int,
    end: int,
    pop: _Population,
) -> tuple[list[str], list[str], int]:
    """This chunk's share of the member file: half people of the breach, half not."""
    total = members_size(records)
    in_breach = _quota(total // 2, records, start, end)
    absent = _quota(total - total // 2, records, start, end)
    if not (~pop.spoiled).any():
        in_breach, absent = 0, absent + in_breach
    breach_rows, breach_expected = _breach_members(rng, pop, in_breach)
    rows = breach_rows + _absent_members(rng, absent)
    expected = breach_expected + ["false,,,absent"] * absent
    order = rng.permutation(len(rows)).tolist()
    return [rows[i] for i in order], [expected[i] for i in order], in_breach


# --------------------------------------------------------------------------- driver


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _start_method() -> str:
    """fork when it is safe (no other thread), else forkserver.

    fork starts fast and does not re-import the caller's main module; forking a
    process that runs other threads (an event loop's executor, a progress monitor)
    can deadlock, so such callers get forkserver, which needs an import-safe
    ``__main__`` (the usual ``if __name__ == "__main__":`` guard).
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


@contextmanager
def _chunk_source(
    seed: int, records: int, workers: int
) -> Iterator[Callable[[], Iterator[_Chunk]]]:
    """Chunks in order, made here or by a pool of processes started on entry."""
    n_chunks = -(-records // CHUNK_ROWS)
    tasks = [(seed, i, records) for i in range(n_chunks)]
    if workers <= 1 or n_chunks <= 1:
        yield lambda: map(_make_chunk, tasks)
        return
    context = multiprocessing.get_context(_start_method())
    with context.Pool(processes=min(workers, n_chunks)) as pool:

        def ordered() -> Iterator[_Chunk]:
            # A window of pending chunks keeps memory flat when the disk is slower
            # than the workers.
            pending: deque[AsyncResult[_Chunk]] = deque()
            queue = iter(tasks)
            for task in queue:
                pending.append(pool.apply_async(_make_chunk, (task,)))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                chunk = pending.popleft().get()
                following = next(queue, None)
                if following is not None:
                    pending.append(pool.apply_async(_make_chunk, (following,)))
                yield chunk

        yield ordered


@dataclass
class _Totals:
    viamedis_rows: int = 0
    almerys_rows: int = 0
    people: int = 0
    people_in_both: int = 0
    bad_rows: int = 0
    members: int = 0
    members_in_breach: int = 0

    def add(self, chunk: _Chunk) -> None:
        self.viamedis_rows += chunk.viamedis_rows
        self.almerys_rows += chunk.almerys_rows
        self.people += chunk.people
        self.people_in_both += chunk.people_in_both
        self.bad_rows += chunk.bad_rows
        self.members += len(chunk.members)
        self.members_in_breach += chunk.members_in_breach


def _with_refs(rows: Sequence[str], before: int, delimiter: str) -> str:
    return "".join(f"m-{before + n:06d}{delimiter}{row}\n" for n, row in enumerate(rows, 1))


def _remove_parts(parts: Iterable[Path]) -> None:
    for part in parts:
        part.unlink(missing_ok=True)


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="rec", unit_scale=True, file=sys.stderr, desc="synth")


def write_synthetic_breach(
    out: Path,
    records: int = 1_000_000,
    seed: int = 0,
    *,
    workers: int | None = None,
    progress: bool = False,
) -> SynthSummary:
    """Write a synthetic breach of ``records`` rows (both dumps together) into ``out``.

    ``members.csv`` holds ``members_size(records)`` members, half of them people of
    the breach. ``members-expected.csv`` says, per ref, whether the member is in the
    breach, the level a lookup should answer (``strong``: the member row has the NIR;
    ``weak``: names and date only; ``similar``: one difference of docs/design.md §3),
    the sources holding that person's records, and the member's ``kind`` (one of
    ``MEMBER_KINDS``). Members outside the breach never match by NIR, by construction;
    their names and dates follow the breach's, so a few are homonyms of someone in it
    (about 4 in 100,000 at a million records, more at 33 million). Homonyms also make a
    few ground truths one notch low: a lookup lists one more source, or answers weak
    where the member was typed with a difference that happens to spell another person
    of the same date exactly (each about 1 in 1,000 members of a similar kind at a
    million records).

    The bytes written depend only on ``records`` and ``seed``, never on ``workers``
    (default: the CPUs this process may use). Files are written under a temporary
    name and renamed when complete, so an interrupted run leaves no file that looks
    whole.
    """
    if records < 0:
        raise ValueError("records must be >= 0")
    if seed < 0:
        raise ValueError("seed must be >= 0")
    began = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workers = _default_workers() if workers is None else max(1, workers)

    names = ("viamedis.csv", "almerys.csv", "members.csv", "members-expected.csv")
    parts = {name: out / f".{name}.part" for name in names}
    totals = _Totals()
    with ExitStack() as stack:
        # The pool starts before the progress bar and its monitor thread (see
        # _start_method).
        chunks = stack.enter_context(_chunk_source(seed, records, workers))
        bar = _progress(records, progress)
        if bar is not None:
            stack.callback(bar.close)
        stack.callback(_remove_parts, parts.values())
        with (
            parts["viamedis.csv"].open("wb") as viamedis,
            parts["almerys.csv"].open("wb") as almerys,
            parts["members.csv"].open("w", encoding="utf-8", newline="") as members,
            parts["members-expected.csv"].open("w", encoding="utf-8", newline="") as expected,
        ):
            viamedis.write((";".join(VIAMEDIS_HEADER) + "\r\n").encode("cp1252"))
            almerys.write((",".join(ALMERYS_HEADER) + "\n").encode("utf-8"))
            members.write(";".join(MEMBERS_HEADER + CONTACT_HEADER) + "\n")
            expected.write(",".join(MEMBERS_EXPECTED_HEADER) + "\n")
            for chunk in chunks():
                viamedis.write(chunk.viamedis)
                almerys.write(chunk.almerys)
                # Refs are numbered here, in file order, across chunks.
                members.write(_with_refs(with_contacts(chunk.members, seed, totals.members),
                                         totals.members, ";"))
                expected.write(_with_refs(chunk.expected, totals.members, ","))
                totals.add(chunk)
                if bar is not None:
                    bar.update(chunk.viamedis_rows + chunk.almerys_rows)
        for name, part in parts.items():
            part.replace(out / name)
        (out / "sources.toml").write_text(_SOURCES_TOML, encoding="utf-8")

    return SynthSummary(
        out=out,
        viamedis_rows=totals.viamedis_rows,
        almerys_rows=totals.almerys_rows,
        people=totals.people,
        people_in_both=totals.people_in_both,
        bad_rows=totals.bad_rows,
        members=totals.members,
        members_in_breach=totals.members_in_breach,
        seconds=time.perf_counter() - began,
    )
