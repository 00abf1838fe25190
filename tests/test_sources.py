"""Tests for indexer.build.sources: reading sources.toml, and every way it can be wrong.

Each refusal is checked by its message (which file, which source, which key, what to
do), since the message is what the person running the build gets to fix it.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.build.dumps import DUMP_FIELDS
from indexer.build.sources import MAX_SOURCES, Source, SourcesError, load_sources

FULL = """\
[[sources]]
id = "viamedis-2024"
title = "Viamedis"
breach_date = "2024-01-29"
description = "Third-party payment operator for complementary health insurers."
path = "viamedis.csv"
encoding = "CP1252"
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
breach_date = 2024-02-01
path = "data/almerys.csv"
"""

MINIMAL = """\
[[sources]]
id = "x"
title = "X"
breach_date = "2024-01-29"
path = "x.csv"
"""


def write(tmp_path: Path, text: str, *data_files: str) -> Path:
    for name in data_files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"NIR;DATE_NAISSANCE\n")
    toml_path = tmp_path / "sources.toml"
    toml_path.write_text(text, encoding="utf-8")
    return toml_path


def error_of(toml_path: Path) -> str:
    with pytest.raises(SourcesError) as info:
        load_sources(toml_path)
    return str(info.value)


def test_full_example_is_read_field_by_field(tmp_path: Path) -> None:
    toml_path = write(tmp_path, FULL, "viamedis.csv", "data/almerys.csv")

    viamedis, almerys = load_sources(toml_path)

    assert viamedis == Source(
        id="viamedis-2024",
        title="Viamedis",
        breach_date="2024-01-29",
        description="Third-party payment operator for complementary health insurers.",
        path=(tmp_path / "viamedis.csv").resolve(),
        encoding="cp1252",  # the codec's own name
        delimiter=";",
        columns={
            "nir": "NIR",
            "last_name": "NOM",
            "usage_name": "NOM_USAGE",
            "first_names": "PRENOMS",
            "birth_date": "DATE_NAISSANCE",
            "birth_rank": "RANG_NAISSANCE",
            "insurer": "ORGANISME",
            "marital_status": "SITUATION_FAMILIALE",
            "tp_guarantee": "GARANTIES_TP",
        },
    )
    # Optional keys left out take their defaults; an unquoted TOML date is accepted.
    assert almerys == Source(
        id="almerys-2024",
        title="Almerys",
        breach_date="2024-02-01",
        description="",
        path=(tmp_path / "data" / "almerys.csv").resolve(),
        encoding=None,
        delimiter=None,
        columns={},
    )


def test_path_is_relative_to_the_toml_file_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (tmp_path / "dumps").mkdir()
    (tmp_path / "dumps" / "x.csv").write_bytes(b"NIR\n")
    (config / "sources.toml").write_text(MINIMAL.replace("x.csv", "../dumps/x.csv"))
    monkeypatch.chdir(tmp_path / "dumps")

    (source,) = load_sources(Path("../config/sources.toml"))

    assert source.path == (tmp_path / "dumps" / "x.csv").resolve()
    assert source.path.is_absolute()


@pytest.mark.parametrize("delimiter", [";", ",", "\\t", "|"])
def test_every_supported_delimiter(tmp_path: Path, delimiter: str) -> None:
    toml_path = write(tmp_path, MINIMAL + f'delimiter = "{delimiter}"\n', "x.csv")
    assert load_sources(toml_path)[0].delimiter == delimiter.replace("\\t", "\t")


@pytest.mark.parametrize(
    ("name", "codec"), [("utf-8", "utf-8"), ("UTF8", "utf-8"), ("latin-1", "iso8859-1")]
)
def test_encoding_is_stored_under_its_codec_name(tmp_path: Path, name: str, codec: str) -> None:
    toml_path = write(tmp_path, MINIMAL + f'encoding = "{name}"\n', "x.csv")
    assert load_sources(toml_path)[0].encoding == codec


def test_source_pickles_for_worker_processes(tmp_path: Path) -> None:
    (source,) = load_sources(write(tmp_path, MINIMAL + '[sources.columns]\nnir = "N"\n', "x.csv"))
    assert pickle.loads(pickle.dumps(source)) == source


def test_255_sources_are_accepted(tmp_path: Path) -> None:
    text = "".join(MINIMAL.replace('id = "x"', f'id = "s{i}"') for i in range(MAX_SOURCES))
    assert len(load_sources(write(tmp_path, text, "x.csv"))) == MAX_SOURCES


def test_missing_file(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nope.toml")
    assert "nope.toml" in message and "no such file" in message


def test_toml_path_is_a_directory(tmp_path: Path) -> None:
    assert "cannot read" in error_of(tmp_path)


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, '[[sources]]\nid = "x"\ntitle = X\n'))
    assert "invalid TOML" in message and "line 3" in message


def test_toml_that_is_not_utf8(tmp_path: Path) -> None:
    toml_path = tmp_path / "sources.toml"
    toml_path.write_bytes(MINIMAL.replace("X", "Caisse générale").encode("cp1252"))
    assert "line 3: not valid UTF-8" in error_of(toml_path)


def test_a_dump_given_in_place_of_the_toml(tmp_path: Path) -> None:
    toml_path = tmp_path / "dump.csv"
    toml_path.write_bytes(b"NIR;NOM\n" * 200_000)
    assert "not a sources.toml" in error_of(toml_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "no [[sources]] table;"),
        ('[[source]]\nid = "x"\n', "no [[sources]] table (found only 'source')"),
        ('sources = "x"\n', "must be a list of tables"),
        ("sources = [1, 2]\n", "must be a list of tables"),
        ("sources = []\n", "[[sources]] is empty"),
        (
            MINIMAL + 'version = 2\n[[sources]]\nid = "y"\n',
            "source #1 ('x'): unknown key 'version'",
        ),
        ('title = "t"\n' + MINIMAL, "unknown top-level key 'title'"),
    ],
)
def test_document_shape_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(write(tmp_path, text, "x.csv"))


@pytest.mark.parametrize("key", ["id", "title", "breach_date", "path"])
def test_missing_required_key(tmp_path: Path, key: str) -> None:
    text = "".join(line + "\n" for line in MINIMAL.splitlines() if not line.startswith(key))
    message = error_of(write(tmp_path, text, "x.csv"))
    assert "source #1" in message and f"missing required key {key!r}" in message


@pytest.mark.parametrize("key", ["id", "title", "breach_date", "path"])
@pytest.mark.parametrize("blank", ['""', '"   "'])
def test_empty_required_key(tmp_path: Path, key: str, blank: str) -> None:
    lines = [f"{key} = {blank}" if line.startswith(key) else line for line in MINIMAL.splitlines()]
    message = error_of(write(tmp_path, "\n".join(lines), "x.csv"))
    assert "source #1" in message and f"{key!r} is empty" in message


@pytest.mark.parametrize("bad_id", ["Viamedis", "viamedis 2024", "via_medis", "é"])
def test_bad_id(tmp_path: Path, bad_id: str) -> None:
    message = error_of(write(tmp_path, MINIMAL.replace('"x"', json.dumps(bad_id)), "x.csv"))
    assert f"id {bad_id!r} may hold only lower-case letters" in message


def test_duplicate_id(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, MINIMAL + MINIMAL, "x.csv"))
    assert "source #2: id 'x' is used by an earlier source" in message


@pytest.mark.parametrize(
    "value", ['"2024-13-01"', '"2024-02-30"', '"29/01/2024"', '"2024-1-29"', '" 2024-01-29"']
)
def test_bad_breach_date(tmp_path: Path, value: str) -> None:
    message = error_of(write(tmp_path, MINIMAL.replace('"2024-01-29"', value), "x.csv"))
    assert "is not a date written YYYY-MM-DD" in message


def test_breach_date_as_date_time_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace('"2024-01-29"', "2024-01-29T10:00:00")
    assert "'breach_date' must be a string in quotes, not a date-time" in error_of(
        write(tmp_path, text, "x.csv")
    )


@pytest.mark.parametrize("name", ["klingon", "rot13", "base64", "utf-8\\u0000"])
def test_unknown_encoding(tmp_path: Path, name: str) -> None:
    message = error_of(write(tmp_path, MINIMAL + f'encoding = "{name}"\n', "x.csv"))
    assert "unknown encoding" in message and "cp1252" in message


@pytest.mark.parametrize("name", ["utf-16", "utf-32-le", "cp500"])
def test_encoding_that_is_not_ascii_compatible(tmp_path: Path, name: str) -> None:
    message = error_of(write(tmp_path, MINIMAL + f'encoding = "{name}"\n', "x.csv"))
    assert "not ASCII-compatible" in message and "iconv" in message


@pytest.mark.parametrize("delimiter", [":", "", ";;", " ", "tab"])
def test_bad_delimiter(tmp_path: Path, delimiter: str) -> None:
    message = error_of(write(tmp_path, MINIMAL + f'delimiter = "{delimiter}"\n', "x.csv"))
    assert f"delimiter {delimiter!r} is not supported" in message


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ('ssn = "SSN"', "[sources.columns] has unknown field 'ssn'; the fields are nir, "),
        ("nir = 3", "[sources.columns] nir must be the header in quotes, not an integer"),
        ('nir = ""', "[sources.columns] nir is empty"),
    ],
)
def test_bad_columns(tmp_path: Path, columns: str, expected: str) -> None:
    text = MINIMAL + "[sources.columns]\n" + columns + "\n"
    assert expected in error_of(write(tmp_path, text, "x.csv"))


def test_columns_must_be_a_table(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, MINIMAL + 'columns = "NIR"\n', "x.csv"))
    assert "'columns' must be a table" in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("title = 1", "'title' must be a string in quotes, not an integer"),
        ("id = true", "'id' must be a string in quotes, not a boolean"),
        ('path = ["x.csv"]', "'path' must be a string in quotes, not an array"),
        ("description = 1.5", "'description' must be a string in quotes, not a float"),
        ("encoding = {a = 1}", "'encoding' must be a string in quotes, not a table"),
        ("delimiter = 59", "'delimiter' must be a string in quotes, not an integer"),
        ("breach_date = 12:00:00", "'breach_date' must be a string in quotes, not a time"),
    ],
)
def test_non_string_values(tmp_path: Path, line: str, expected: str) -> None:
    key = line.split(" ")[0]
    lines = [ln for ln in MINIMAL.splitlines() if not ln.startswith(key)] + [line]
    assert expected in error_of(write(tmp_path, "\n".join(lines) + "\n", "x.csv"))


def test_more_than_255_sources(tmp_path: Path) -> None:
    text = "".join(MINIMAL.replace('id = "x"', f'id = "s{i}"') for i in range(MAX_SOURCES + 1))
    assert "256 sources, at most 255" in error_of(write(tmp_path, text, "x.csv"))


def test_missing_data_file_names_the_resolved_path(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, MINIMAL.replace("x.csv", "sub/../x.csv")))
    assert f"the dump file {(tmp_path / 'x.csv').resolve()} does not exist" in message
    assert "relative to the directory of the sources file" in message


def test_data_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "x.csv").mkdir()
    assert "is not a regular file" in error_of(write(tmp_path, MINIMAL))


def test_data_path_with_nul(tmp_path: Path) -> None:
    assert "NUL" in error_of(write(tmp_path, MINIMAL.replace("x.csv", "x\\u0000.csv")))


def test_second_source_errors_name_it(tmp_path: Path) -> None:
    text = MINIMAL + MINIMAL.replace('"x"', '"y"').replace("2024-01-29", "2024-01-32")
    assert "source #2 ('y'): breach_date '2024-01-32'" in error_of(write(tmp_path, text, "x.csv"))


# Property: whatever the file holds, the only exception is SourcesError.

_KEYS = ["id", "title", "breach_date", "description", "path", "encoding", "delimiter", "columns"]
# TOML values, already written out: strings (some of them valid for some key), and
# every other TOML type, so that each key meets values of the wrong type too.
_VALUES = st.one_of(
    st.sampled_from(["x", "x.csv", "2024-01-29", ";", "\t", "utf-8", "utf-16", "", "NIR"]).map(
        json.dumps
    ),
    st.text(max_size=12).map(lambda text: json.dumps(text, ensure_ascii=False)),
    st.integers().map(str),
    st.sampled_from(["true", "false", "1.5", "inf", "[]", '["x"]', "{}", "{ a = 1 }"]),
    st.dates().map(lambda day: day.isoformat()),
    st.datetimes().map(lambda moment: moment.isoformat()),
)


@st.composite
def _documents(draw: st.DrawFn) -> str:
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        lines.append("[[sources]]")
        for key in draw(st.lists(st.sampled_from([*_KEYS, "extra"]), unique=True)):
            if key == "columns":
                lines.append("[sources.columns]")
                for field in draw(st.lists(st.sampled_from([*DUMP_FIELDS, "ssn"]), unique=True)):
                    lines.append(f"{field} = {draw(_VALUES)}")
            else:
                lines.append(f"{key} = {draw(_VALUES)}")
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(), _documents(), _documents().map(lambda d: d[: len(d) // 2])))
def test_any_text_raises_only_sources_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    directory = tmp_path_factory.mktemp("fuzz", numbered=True)
    (directory / "x.csv").write_bytes(b"NIR;DATE_NAISSANCE\n")
    toml_path = directory / "sources.toml"
    toml_path.write_text(text, encoding="utf-8")
    try:
        sources = load_sources(toml_path)
    except SourcesError as exc:
        assert str(exc).startswith(str(toml_path))
    else:
        assert 1 <= len(sources) <= MAX_SOURCES
        assert all(source.path.is_file() for source in sources)
