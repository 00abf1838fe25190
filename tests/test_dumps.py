"""Tests for indexer.dumps: header matching, layout detection, blocks and row parsing.

Every dump is a real file written to tmp_path and read through the public functions.
The block tests use tiny block sizes so that record boundaries fall everywhere,
including inside quoted fields; the properties check that arbitrary bytes never
raise and that any rows csv.writer writes come back exactly, whatever the blocks.
"""

from __future__ import annotations

import csv
import io
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.build.dumps import (
    DUMP_FIELDS,
    HEADER_ALIASES,
    DumpError,
    DumpLayout,
    detect_layout,
    iter_blocks,
    parse_block,
)
from indexer.build.sources import Source
from indexer.core.columns import MEMBER_ALIASES, fold_header, match_headers

FRENCH_HEADER = (
    "NIR;NOM;NOM_USAGE;PRENOMS;DATE_NAISSANCE;RANG_NAISSANCE;ORGANISME;"
    "SITUATION_FAMILIALE;GARANTIES_TP"
)
ALL_COLUMNS = {field: index for index, field in enumerate(DUMP_FIELDS)}
ROW = ("253072B07300470", "DUPONT", "MARTIN", "JEAN PIERRE", "15/07/1953", "1", "MGEN", "M", "PH")

Row = tuple[str, ...] | None


def source_for(
    path: Path,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> Source:
    return Source(
        id="test-2024",
        title="Test",
        breach_date="2024-01-29",
        description="",
        path=path,
        encoding=encoding,
        delimiter=delimiter,
        columns=columns or {},
    )


def write_dump(tmp_path: Path, content: bytes | str, name: str = "dump.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def read_rows(layout: DumpLayout, block_size: int = 4 << 20) -> list[Row]:
    return [row for block in iter_blocks(layout, block_size) for row in parse_block(block, layout)]


def data_part(layout: DumpLayout) -> bytes:
    return layout.path.read_bytes()[layout.data_offset :]


def full_row(**values: str) -> tuple[str, ...]:
    return tuple(values.get(field, "") for field in DUMP_FIELDS)


# fold_header and the alias tables


@pytest.mark.parametrize(
    ("cell", "folded"),
    [
        ("Date de naissance", "DATE_DE_NAISSANCE"),
        ("Prénom(s)", "PRENOM_S"),
        ("\ufeffNIR", "NIR"),
        ('"Nom"', "NOM"),
        ("  nom_usage \r", "NOM_USAGE"),
        ("Nom d'usage", "NOM_D_USAGE"),
        ("Nom d’usage", "NOM_D_USAGE"),
        ("N° SS", "NO_SS"),
        ("Né(e) le", "NE_E_LE"),
        ("Numéro de Sécurité Sociale", "NUMERO_DE_SECURITE_SOCIALE"),
        ("date-of.birth", "DATE_OF_BIRTH"),
        ("dateOfBirth", "DATE_OF_BIRTH"),
        ("Situation  familiale", "SITUATION_FAMILIALE"),
        ("Œuvre Straße", "OEUVRE_STRASSE"),
        ("ÉTAT CIVIL", "ETAT_CIVIL"),
        ("", ""),
        ("---", ""),
    ],
)
def test_fold_header(cell: str, folded: str) -> None:
    assert fold_header(cell) == folded


@given(st.text())
def test_fold_header_is_idempotent_and_plain(cell: str) -> None:
    folded = fold_header(cell)
    assert fold_header(folded) == folded
    assert re.fullmatch(r"([A-Z0-9]+(_[A-Z0-9]+)*)?", folded)


REQUIRED_ALIASES = {
    "nir": "NIR NUMERO_SECU NUM_SECU NUMERO_SECURITE_SOCIALE NUMERO_DE_SECURITE_SOCIALE NO_SS "
    "NSS SSN SOCIAL_SECURITY_NUMBER INSEE",
    "last_name": "NOM NOM_NAISSANCE NOM_DE_NAISSANCE NOM_PATRONYMIQUE NOM_FAMILLE LAST_NAME "
    "SURNAME FAMILY_NAME BIRTH_NAME",
    "usage_name": "NOM_USAGE NOM_D_USAGE NOM_MARITAL USAGE_NAME MARRIED_NAME",
    "first_names": "PRENOMS PRENOM PRENOM_S FIRST_NAMES FIRST_NAME GIVEN_NAMES FORENAMES",
    "birth_date": "DATE_NAISSANCE DATE_DE_NAISSANCE DDN NE_LE BIRTH_DATE DATE_OF_BIRTH DOB "
    "BIRTHDATE",
    "birth_rank": "RANG_NAISSANCE RANG_DE_NAISSANCE RANG BIRTH_RANK BIRTH_ORDER",
    "insurer": "ORGANISME ORGANISME_COMPLEMENTAIRE MUTUELLE ASSUREUR COMPLEMENTAIRE INSURER "
    "INSURANCE CARRIER",
    "marital_status": "SITUATION_FAMILIALE SITUATION_MATRIMONIALE ETAT_CIVIL MARITAL_STATUS "
    "CIVIL_STATUS",
    "tp_guarantee": "GARANTIES_TP GARANTIE_TP GARANTIES DROITS_TP TP_GUARANTEE TP_GUARANTEES "
    "GUARANTEES COVERAGE",
}


@pytest.mark.parametrize("field", DUMP_FIELDS)
def test_header_aliases_recognise_the_documented_headers(field: str) -> None:
    for header in REQUIRED_ALIASES[field].split():
        assert match_headers(["X", header.lower().replace("_", " ")], HEADER_ALIASES) == {
            field: 1
        }, header


def test_member_aliases() -> None:
    assert set(MEMBER_ALIASES) == {"ref", "nir", "last_name", "first_name", "birth_date"}
    expected = {
        "ref": "REF REFERENCE ID MEMBER_ID NUMERO_ADHERENT ADHERENT IDENTIFIANT",
        "first_name": "PRENOM PRENOMS FIRST_NAME GIVEN_NAME",
        "nir": REQUIRED_ALIASES["nir"],
        "last_name": REQUIRED_ALIASES["last_name"],
        "birth_date": REQUIRED_ALIASES["birth_date"],
    }
    for field, headers in expected.items():
        assert set(headers.split()) <= set(MEMBER_ALIASES[field]), field
    assert not {"NOM_USAGE", "NOM_D_USAGE"} & set(MEMBER_ALIASES["last_name"])
    cells = ["Référence", "N° SS", "Nom", "Prénom", "Né le"]
    assert match_headers(cells, MEMBER_ALIASES) == {
        "ref": 0,
        "nir": 1,
        "last_name": 2,
        "first_name": 3,
        "birth_date": 4,
    }


@pytest.mark.parametrize("aliases", [HEADER_ALIASES, MEMBER_ALIASES])
def test_aliases_are_folded_and_no_header_names_two_fields(
    aliases: Mapping[str, tuple[str, ...]],
) -> None:
    owner: dict[str, str] = {}
    for field, names in aliases.items():
        for name in names:
            assert fold_header(name) == name
            # The compact form (no '_') is matched too, so it must be unambiguous as well.
            for form in (name, name.replace("_", "")):
                assert owner.setdefault(form, field) == field, (form, field)


def test_match_headers_priority_and_compact_forms() -> None:
    cells = ["Nom", "NOM_NAISSANCE", "datenaissance", "Prénoms", "prenom", "Nom", "libellé"]
    # The first alias that matches wins (NOM before NOM_NAISSANCE), then the leftmost
    # cell; DATENAISSANCE is matched once separators are dropped; "libellé" is nobody.
    assert match_headers(cells, HEADER_ALIASES) == {
        "last_name": 0,
        "birth_date": 2,
        "first_names": 3,
    }
    assert match_headers(cells, {"x": ("LIBELLE",), "y": ("nothing",)}) == {"x": 6}
    assert match_headers([], HEADER_ALIASES) == {}


# detect_layout


def test_french_headers_semicolon_utf8(tmp_path: Path) -> None:
    path = write_dump(tmp_path, FRENCH_HEADER + "\n" + ";".join(ROW) + "\n")

    layout = detect_layout(source_for(path))

    assert layout == DumpLayout(
        path=path,
        encoding=None,
        delimiter=";",
        columns=ALL_COLUMNS,
        data_offset=len(FRENCH_HEADER) + 1,
    )
    assert read_rows(layout) == [ROW]


def test_layout_pickles_for_worker_processes(tmp_path: Path) -> None:
    layout = detect_layout(source_for(write_dump(tmp_path, FRENCH_HEADER + "\n")))
    assert pickle.loads(pickle.dumps(layout)) == layout


def test_english_headers_comma_with_bom_and_crlf(tmp_path: Path) -> None:
    header = "SSN,Last Name,First Names,Date of Birth,Insurer,Coverage"
    path = write_dump(tmp_path, "\ufeff" + header + "\r\n" + "1,DOE,JOHN,1980-01-02,AXA,OPT\r\n")

    layout = detect_layout(source_for(path))

    assert layout.delimiter == ","
    assert layout.data_offset == 3 + len(header) + 2
    assert layout.columns == {
        "nir": 0,
        "last_name": 1,
        "first_names": 2,
        "birth_date": 3,
        "insurer": 4,
        "tp_guarantee": 5,
    }
    assert read_rows(layout) == [
        full_row(
            nir="1",
            last_name="DOE",
            first_names="JOHN",
            birth_date="1980-01-02",
            insurer="AXA",
            tp_guarantee="OPT",
        )
    ]


def test_bom_is_skipped_whatever_the_declared_encoding(tmp_path: Path) -> None:
    # Read as cp1252, a UTF-8 BOM would be "ï»¿" glued to the first header.
    path = write_dump(tmp_path, b"\xef\xbb\xbfNIR;DDN\n1;01/01/1990\n")
    layout = detect_layout(source_for(path, encoding="cp1252"))
    assert layout.columns == {"nir": 0, "birth_date": 1}
    assert layout.data_offset == 3 + len("NIR;DDN\n")


def test_large_dump_is_sampled_and_read_whole(tmp_path: Path) -> None:
    # Larger than the 64 KiB sample, with a quoted newline in every row.
    rows = [f'{i};"NOM\n{i}";;A;01/01/1990;1;;;\n' for i in range(5000)]
    path = write_dump(tmp_path, FRENCH_HEADER + "\n" + "".join(rows))
    assert path.stat().st_size > 2 * (64 << 10)
    layout = detect_layout(source_for(path))
    assert layout.delimiter == ";" and layout.columns == ALL_COLUMNS
    for block_size in (1000, 4 << 20):
        parsed = read_rows(layout, block_size)
        assert [row[1] if row else row for row in parsed] == [f"NOM\n{i}" for i in range(5000)]


def test_accented_headers_tab_delimited(tmp_path: Path) -> None:
    header = "Numéro de sécurité sociale\tNom de naissance\tNom d’usage\tPrénom(s)\tNé le\tRang"
    path = write_dump(tmp_path, header + "\n1\tA\tB\tC\t01/01/1990\t2\n")

    layout = detect_layout(source_for(path))

    assert layout.delimiter == "\t"
    assert layout.columns == {
        "nir": 0,
        "last_name": 1,
        "usage_name": 2,
        "first_names": 3,
        "birth_date": 4,
        "birth_rank": 5,
    }
    assert read_rows(layout) == [
        full_row(
            nir="1",
            last_name="A",
            usage_name="B",
            first_names="C",
            birth_date="01/01/1990",
            birth_rank="2",
        )
    ]


@pytest.mark.parametrize(
    ("content", "delimiter"),
    [
        # Commas inside values do not fool a semicolon file, nor semicolons a comma file.
        ("NIR;NOM;PRENOMS;DDN\n1;A;JEAN, PIERRE;01/01/1990\n2;B;LUC, MARC;01/01/1991\n", ";"),
        ('NIR,NOM,PRENOMS,DDN\n1,A,"JEAN; PIERRE",01/01/1990\n2,B,LUC;MARC,01/01/1991\n', ","),
        ("NIR\tNOM\tPRENOMS\tDDN\n1\tA; B\tJ, P\t01/01/1990\n", "\t"),
        ("NIR|NOM|PRENOMS|DDN\n1|A|J|01/01/1990\n", "|"),
        ("NIR;DDN\n", ";"),  # header only
    ],
)
def test_delimiter_sniffing(tmp_path: Path, content: str, delimiter: str) -> None:
    layout = detect_layout(source_for(write_dump(tmp_path, content)))
    assert layout.delimiter == delimiter


def test_header_only_file_without_newline_has_no_rows(tmp_path: Path) -> None:
    path = write_dump(tmp_path, "NIR;DATE_NAISSANCE")
    layout = detect_layout(source_for(path))
    assert layout.data_offset == path.stat().st_size
    assert list(iter_blocks(layout)) == []


def test_blank_lines_before_the_header_are_skipped(tmp_path: Path) -> None:
    path = write_dump(tmp_path, "\n  \r\nNIR;DDN\n1;01/01/1990\n")
    layout = detect_layout(source_for(path))
    assert layout.data_offset == len("\n  \r\nNIR;DDN\n")
    assert read_rows(layout) == [full_row(nir="1", birth_date="01/01/1990")]


def test_explicit_delimiter_is_not_sniffed(tmp_path: Path) -> None:
    path = write_dump(tmp_path, "NIR|DDN;X\n1|01/01/1990;Y\n")
    with pytest.raises(DumpError):  # sniffed: ';' (a tie with '|' goes to ';')
        detect_layout(source_for(path, columns={"birth_date": "DDN;X"}))
    layout = detect_layout(source_for(path, delimiter="|", columns={"birth_date": "DDN;X"}))
    assert layout.delimiter == "|"
    assert read_rows(layout) == [full_row(nir="1", birth_date="01/01/1990;Y")]


def test_explicit_column_map(tmp_path: Path) -> None:
    header = "Identifiant;Patronyme;Prénom usuel;Naissance;NOM;Caisse"
    path = write_dump(tmp_path, header + "\n1;DUPONT;JEAN;01/01/1990;IGNORED;MGEN\n")
    columns = {
        "nir": "identifiant",  # matched after folding on both sides
        "last_name": "PATRONYME",
        "first_names": "Prénom usuel",
        "birth_date": "naissance",
    }

    layout = detect_layout(source_for(path, columns=columns))

    # NOM would be recognised as last_name, but the explicit map wins; the fields it
    # does not name are still recognised (here none of Caisse).
    assert layout.columns == {"nir": 0, "last_name": 1, "first_names": 2, "birth_date": 3}
    assert read_rows(layout) == [
        full_row(nir="1", last_name="DUPONT", first_names="JEAN", birth_date="01/01/1990")
    ]


def test_partial_column_map_leaves_the_rest_to_recognition(tmp_path: Path) -> None:
    path = write_dump(tmp_path, "Numéro INSEE assuré;Nom;Prénoms;DDN;Mutuelle\n")
    layout = detect_layout(source_for(path, columns={"nir": "Numéro INSEE assuré"}))
    assert layout.columns == {
        "nir": 0,
        "last_name": 1,
        "first_names": 2,
        "birth_date": 3,
        "insurer": 4,
    }


def test_explicit_header_missing_from_the_file(tmp_path: Path) -> None:
    path = write_dump(tmp_path, "NIR;NOM;DDN\n1;SECRET;01/01/1990\n")
    with pytest.raises(DumpError) as info:
        detect_layout(source_for(path, columns={"nir": "NUMERO"}))
    message = str(info.value)
    assert str(path) in message
    assert "maps nir to 'NUMERO', which is not in the header line" in message
    assert "headers found: 'NIR', 'NOM', 'DDN'" in message
    assert "SECRET" not in message


@pytest.mark.parametrize(
    "header",
    [
        "NIR;NOM;PRENOMS;ORGANISME",  # no birth date
        "NOM;DATE_NAISSANCE;ORGANISME",  # a last name but no first names, and no NIR
        "A;B;C",
    ],
)
def test_no_identifier_columns(tmp_path: Path, header: str) -> None:
    path = write_dump(tmp_path, header + "\nSECRET;SECRET;SECRET;SECRET\n")
    with pytest.raises(DumpError) as info:
        detect_layout(source_for(path))
    message = str(info.value)
    assert str(path) in message and "'test-2024'" in message
    assert "no recognisable identifier columns" in message
    assert "headers found: " + ", ".join(repr(cell) for cell in header.split(";")) in message
    assert "[sources.columns]" in message
    assert "SECRET" not in message


def test_a_dump_without_header_is_not_quoted(tmp_path: Path) -> None:
    path = write_dump(tmp_path, "253072B07300470;DUPONT;JEAN;15/07/1953\n1;A;B;01/01/1990\n")
    with pytest.raises(DumpError) as info:
        detect_layout(source_for(path))
    message = str(info.value)
    assert "not shown" in message
    assert "DUPONT" not in message and "253072B07300470" not in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        (b"\n\n  \n", "the file is empty"),
        ("NIR;DDN\n".encode("utf-16"), "UTF-16"),
        (b"N\0I\0R\0;\0D\0D\0N\0\n\0", "NUL bytes"),
        (b"NIR;DDN\r1;01/01/1990\r", "CR alone"),
        (b"NIR DDN\n", "cannot tell the delimiter"),
        (b"x" * (70 << 10), "no line ends in the first 64 KiB"),
    ],
)
def test_unreadable_dumps(tmp_path: Path, content: bytes, expected: str) -> None:
    path = write_dump(tmp_path, content)
    with pytest.raises(DumpError, match=re.escape(expected)) as info:
        detect_layout(source_for(path))
    assert str(path) in str(info.value)


def test_missing_dump_file(tmp_path: Path) -> None:
    with pytest.raises(DumpError, match="cannot read the dump of source 'test-2024'"):
        detect_layout(source_for(tmp_path / "gone.csv"))


# Encodings


def test_cp1252_file_declared(tmp_path: Path) -> None:
    content = "Prénoms;Date de naissance;Nom\nHÉLÈNE;01/01/1990;LEFÈVRE\n".encode("cp1252")
    layout = detect_layout(source_for(write_dump(tmp_path, content), encoding="cp1252"))
    assert layout.encoding == "cp1252"
    assert layout.columns == {"last_name": 2, "first_names": 0, "birth_date": 1}
    assert read_rows(layout) == [
        full_row(first_names="HÉLÈNE", birth_date="01/01/1990", last_name="LEFÈVRE")
    ]


def test_cp1252_file_undeclared_falls_back_line_by_line(tmp_path: Path) -> None:
    rows = [f"NOM{i};JOSÉ;01/01/1990;ŒIL\n" for i in range(200)]  # 200 bad lines in a block
    content = ("Nom;Prénoms;Né le;Mutuelle\n" + "".join(rows)).encode("cp1252")
    layout = detect_layout(source_for(write_dump(tmp_path, content)))
    assert layout.encoding is None
    assert layout.columns == {"last_name": 0, "first_names": 1, "birth_date": 2, "insurer": 3}
    expected = [
        full_row(last_name=f"NOM{i}", first_names="JOSÉ", birth_date="01/01/1990", insurer="ŒIL")
        for i in range(200)
    ]
    assert read_rows(layout) == expected
    assert read_rows(layout, block_size=50) == expected


def test_utf8_file_with_cp1252_lines(tmp_path: Path) -> None:
    names = ["ÉLODIE", "Zoë", "ŒDIPE", "José", "Ångström", "Dvořák", "Müller", "�"]
    # 480 lines, 160 of them cp1252: more bad lines than are decoded around in bulk.
    lines = [f"1;{name};01/01/1990\n".encode() for name in names * 60]
    # Every third line in cp1252 (Dvořák and U+FFFD have no cp1252 form: those stay UTF-8).
    for index in range(0, len(lines), 3):
        if names[index % len(names)] not in ("Dvořák", "�"):
            lines[index] = lines[index].decode().encode("cp1252")
    path = write_dump(tmp_path, b"NIR;PRENOMS;DDN\n" + b"".join(lines))
    layout = detect_layout(source_for(path))
    expected = [full_row(nir="1", first_names=name, birth_date="01/01/1990") for name in names * 60]
    assert read_rows(layout) == expected
    assert read_rows(layout, block_size=64) == expected


def test_utf8_file_with_one_cp1252_line(tmp_path: Path) -> None:
    content = (
        b"NIR;NOM;DDN\n1;DURAND;01/01/1990\n"
        + "2;LEFÈVRE;02/02/1990\n".encode("cp1252")
        + "3;GÉRARD;03/03/1990\n".encode()
    )
    layout = detect_layout(source_for(write_dump(tmp_path, content)))
    assert [row[1] if row else row for row in read_rows(layout)] == ["DURAND", "LEFÈVRE", "GÉRARD"]


# Blocks and rows


QUOTED = (
    FRENCH_HEADER
    + "\n"
    + '1;"DUPONT; DIT ""LE GRAND""";;"JEAN\nPIERRE";01/01/1990;1;"MGEN";M;"PHARMA;OPTIQUE"\n'
    + '2;"LE\r\nGALL";;ANNE;02/02/1990;1;MGEN;;"a\n\n\nb"\n'
    + '3;"";;"";03/03/1990;;"";;""\n'
    + '4;MARTIN;;LUC;04/04/1990;2;;;"""quoted"""'  # no final newline
)
QUOTED_ROWS = [
    (
        "1",
        'DUPONT; DIT "LE GRAND"',
        "",
        "JEAN\nPIERRE",
        "01/01/1990",
        "1",
        "MGEN",
        "M",
        "PHARMA;OPTIQUE",
    ),
    ("2", "LE\r\nGALL", "", "ANNE", "02/02/1990", "1", "MGEN", "", "a\n\n\nb"),
    ("3", "", "", "", "03/03/1990", "", "", "", ""),
    ("4", "MARTIN", "", "LUC", "04/04/1990", "2", "", "", '"quoted"'),
]


@pytest.mark.parametrize("block_size", [1, 2, 3, 7, 16, 64, 100, 4 << 20])
def test_blocks_never_split_a_quoted_field(tmp_path: Path, block_size: int) -> None:
    layout = detect_layout(source_for(write_dump(tmp_path, QUOTED)))
    blocks = list(iter_blocks(layout, block_size))

    assert b"".join(blocks) == data_part(layout)
    for block in blocks[:-1]:
        assert block.endswith(b"\n") and block.count(b'"') % 2 == 0
    assert read_rows(layout, block_size) == QUOTED_ROWS


def test_block_size_is_about_the_size_asked(tmp_path: Path) -> None:
    path = write_dump(tmp_path, FRENCH_HEADER + "\n" + (";".join(ROW) + "\n") * 1000)
    layout = detect_layout(source_for(path))
    blocks = list(iter_blocks(layout, 1000))
    row_size = len(";".join(ROW)) + 1
    assert all(abs(len(block) - 1000) < row_size for block in blocks[:-1])
    assert sum(len(read_rows_of(block, layout)) for block in blocks) == 1000


def read_rows_of(block: bytes, layout: DumpLayout) -> list[Row]:
    return list(parse_block(block, layout))


def test_block_size_must_be_positive(tmp_path: Path) -> None:
    layout = detect_layout(source_for(write_dump(tmp_path, FRENCH_HEADER + "\n")))
    with pytest.raises(ValueError, match="block_size"):
        next(iter_blocks(layout, 0))


def test_stray_quote_costs_at_most_the_records_around_a_forced_cut(tmp_path: Path) -> None:
    # O"BRIEN is a literal quote for the csv module but flips the quote parity: every
    # later newline looks quoted, and only max_block_size bounds the block.
    lines = ['1;O"BRIEN;;JEAN;01/01/1990;1;;;\n'] + [
        f"{i};DUPONT;;LUC;01/01/1990;1;;;\n" for i in range(2, 400)
    ]
    layout = detect_layout(source_for(write_dump(tmp_path, FRENCH_HEADER + "\n" + "".join(lines))))

    blocks = list(iter_blocks(layout, 64, max_block_size=1024))

    assert b"".join(blocks) == data_part(layout)
    assert max(len(block) for block in blocks) <= 1024 + 64
    rows = [row for block in blocks for row in parse_block(block, layout)]
    assert rows[0] == full_row(
        nir="1", last_name='O"BRIEN', first_names="JEAN", birth_date="01/01/1990", birth_rank="1"
    )
    assert [row[0] for row in rows if row] == [str(i) for i in range(1, 400)]


def test_crlf_file(tmp_path: Path) -> None:
    content = FRENCH_HEADER + "\r\n" + (";".join(ROW) + "\r\n") * 3
    layout = detect_layout(source_for(write_dump(tmp_path, content)))
    assert layout.data_offset == len(FRENCH_HEADER) + 2
    assert read_rows(layout, 50) == [ROW] * 3


def test_file_without_trailing_newline(tmp_path: Path) -> None:
    content = FRENCH_HEADER + "\n" + ";".join(ROW) + "\n" + ";".join(ROW)
    layout = detect_layout(source_for(write_dump(tmp_path, content)))
    blocks = list(iter_blocks(layout, 64))
    assert not blocks[-1].endswith(b"\n")
    assert read_rows(layout, 64) == [ROW, ROW]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    row = ";".join(ROW)
    content = f"{FRENCH_HEADER}\n\n{row}\n   \n\r\n{row}\n;;;\n\t\n{row}\n\n"
    layout = detect_layout(source_for(write_dump(tmp_path, content)))
    assert read_rows(layout) == [ROW, ROW, ROW]


def test_values_are_stripped_and_extra_columns_ignored(tmp_path: Path) -> None:
    content = FRENCH_HEADER + "\n" + " 1 ; A\t;;  B ;\u00a001/01/1990 ;1;M;S;T;extra;more\n"
    layout = detect_layout(source_for(write_dump(tmp_path, content)))
    assert read_rows(layout) == [("1", "A", "", "B", "01/01/1990", "1", "M", "S", "T")]


def test_malformed_rows_are_none_and_the_rest_come_through(tmp_path: Path) -> None:
    good = ";".join(ROW)
    huge = "X" * (200 << 10)  # over the csv module's field size limit (128 KiB)
    content = (
        f"{FRENCH_HEADER}\n{good}\n"
        "1;TOO;SHORT\n"
        f"{good}\n"
        f"1;NUL\0BYTE;;A;01/01/1990;1;M;S;T\n"
        f"{good}\n"
        f'1;"{huge}";;A;01/01/1990;1;M;S;T\n'
        f"{good}\n"
        "1;A;;B;01/01/1990;1;M;S\n"  # one column short of the last mapped one
        f"{good}\n"
    )
    layout = detect_layout(source_for(write_dump(tmp_path, content)))
    for block_size in (64, 4 << 20):
        assert read_rows(layout, block_size) == [ROW, None, ROW, None, ROW, None, ROW, None, ROW]


def test_dump_with_some_fields_only(tmp_path: Path) -> None:
    content = "DDN;X;NIR\n01/01/1990;x;1\n02/02/1990\n\n03/03/1990;;3;;\n"
    layout = detect_layout(source_for(write_dump(tmp_path, content)))
    assert layout.columns == {"nir": 2, "birth_date": 0}
    assert read_rows(layout) == [
        full_row(nir="1", birth_date="01/01/1990"),
        None,
        full_row(nir="3", birth_date="03/03/1990"),
    ]


# Properties

# Any text but NUL (a malformed row by design); surrogates cannot be written as UTF-8.
FIELD_VALUES = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=600)
    | st.lists(
        st.sampled_from([b"1", b";", b",", b"\t", b'"', b"\n", b"\r", b"\0", b"\xe9", b"x"])
    ).map(b"".join),
    encoding=st.sampled_from([None, "utf-8", "cp1252", "latin-1"]),
    delimiter=st.sampled_from([";", ",", "\t", "|"]),
    columns=st.sampled_from(
        [ALL_COLUMNS, {"nir": 2, "birth_date": 0}, {"nir": 0, "birth_date": 1}]
    ),
    block_size=st.integers(1, 200),
)
def test_arbitrary_bytes_never_raise(
    tmp_path_factory: pytest.TempPathFactory,
    body: bytes,
    encoding: str | None,
    delimiter: str,
    columns: dict[str, int],
    block_size: int,
) -> None:
    path = tmp_path_factory.mktemp("bytes") / "dump.csv"
    path.write_bytes(b"HEADER\n" + body)
    layout = DumpLayout(path, encoding, delimiter, columns, data_offset=7)

    blocks = list(iter_blocks(layout, block_size))

    assert b"".join(blocks) == body
    for rows in [parse_block(body, layout), *(parse_block(block, layout) for block in blocks)]:
        for row in rows:
            assert row is None or (
                len(row) == len(DUMP_FIELDS) and all(type(v) is str for v in row)
            )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.lists(FIELD_VALUES, min_size=9, max_size=9), max_size=12),
    delimiter=st.sampled_from([";", ",", "\t", "|"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    lineterminator=st.sampled_from(["\r\n", "\n"]),
    block_size=st.integers(1, 300),
    trailing_newline=st.booleans(),
)
def test_written_rows_read_back_exactly(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[list[str]],
    delimiter: str,
    quoting: Literal[0, 1],
    lineterminator: str,
    block_size: int,
    trailing_newline: bool,
) -> None:
    if lineterminator == "\n" and any("\r" in value for row in rows for value in row):
        # csv.writer quotes a lone \r only when it is part of its line terminator.
        quoting = csv.QUOTE_ALL
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator=lineterminator)
    writer.writerow(DUMP_FIELDS)
    writer.writerows(rows)
    text = buffer.getvalue()
    if not trailing_newline and rows:
        text = text.removesuffix(lineterminator)
    path = tmp_path_factory.mktemp("rows") / "dump.csv"
    path.write_bytes(text.encode("utf-8"))

    layout = detect_layout(source_for(path, delimiter=delimiter))
    blocks = list(iter_blocks(layout, block_size))

    assert layout.columns == ALL_COLUMNS
    assert b"".join(blocks) == data_part(layout)
    parsed = [row for block in blocks for row in parse_block(block, layout)]
    assert parsed == [tuple(value.strip() for value in row) for row in rows]
