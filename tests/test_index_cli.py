"""`exposure-index` as the operator runs it (docs/design.md §4, contract): flags, exit codes,
what build, info and verify print, and `verify` catching any damage to a generation."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from conftest import write_pepper
from index_support import ALPHA_FAULTS, Dump, cli, dump_rows, identifier_forms, write_dump

from indexer.cli import main
from indexer.index.generation import current_generation
from indexer.index.manifest import verify_generation


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dump, Path, Path]:
    """The hand-written dump, its pepper file and its index, built by the CLI."""
    root = tmp_path_factory.mktemp("cli")
    dump = write_dump(root / "dump")
    pepper = write_pepper(root / "pepper.key")
    index_dir = root / "index"
    assert main(["build", str(dump.sources_toml), "--out", str(index_dir),
                 "--pepper-file", str(pepper), "--shards", "2", "--workers", "1"]) == 0
    return dump, pepper, index_dir


@pytest.fixture
def index_copy(built: tuple[Dump, Path, Path], tmp_path: Path) -> Path:
    """A copy of the built index that a test may damage."""
    copy = tmp_path / "index"
    shutil.copytree(built[2], copy, symlinks=True)
    return copy


def _forms(dump: Dump) -> set[str]:
    forms: set[str] = set()
    for name in ("alpha.csv", "beta.csv"):
        for row in dump_rows(dump.dir / name):
            forms |= identifier_forms(row)
    return {form for form in forms if len(form) >= 4}


# --- help and usage ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ([], ["synth", "build", "info", "verify"]),
        (["synth"], ["--out", "--records", "--seed"]),
        (["build"], ["SOURCES_TOML", "--out", "--shards", "--workers", "--bloom-error-rate",
                     "--pepper-file", "EXPOSURE_PEPPER_FILE"]),
        (["info"], ["INDEX_DIR", "--json"]),
        (["verify"], ["INDEX_DIR"]),
    ],
)
def test_help_of_every_command(
    command: list[str], flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for flag in flags:
        assert flag in text


def test_the_module_runs_as_a_program() -> None:
    run = cli("--help")
    assert run.returncode == 0 and "exposure-index" in run.stdout
    assert cli("build").returncode == 2  # argparse: missing arguments


# --- pepper --------------------------------------------------------------------------------


def test_build_without_a_pepper_says_how_to_give_one(
    built: tuple[Dump, Path, Path], tmp_path: Path
) -> None:
    dump = built[0]
    run = cli("build", dump.sources_toml, "--out", tmp_path / "index")
    assert run.returncode == 2
    assert "no pepper" in run.stderr
    assert "--pepper-file" in run.stderr and "EXPOSURE_PEPPER_FILE" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "index").exists()
    missing = cli("build", dump.sources_toml, "--out", tmp_path / "index",
                  "--pepper-file", tmp_path / "nowhere.key")
    assert missing.returncode == 2 and "cannot read the pepper file" in missing.stderr
    short = write_pepper(tmp_path / "short.key", b"0" * 16)
    weak = cli("build", dump.sources_toml, "--out", tmp_path / "index", "--pepper-file", short)
    assert weak.returncode == 2 and "at least 32" in weak.stderr


def test_the_pepper_from_the_environment(built: tuple[Dump, Path, Path], tmp_path: Path) -> None:
    dump, pepper, index_dir = built
    run = cli("build", dump.sources_toml, "--out", tmp_path / "index", "--shards", "2",
              env={"EXPOSURE_PEPPER_FILE": str(pepper)})
    assert run.returncode == 0, run.stderr
    theirs = orjson.loads((current_generation(index_dir) / "manifest.json").read_bytes())
    ours = orjson.loads((current_generation(tmp_path / "index") / "manifest.json").read_bytes())
    assert ours["key_id"] == theirs["key_id"]


# --- what build and info print ------------------------------------------------------------


def test_build_and_info_report_counts_never_identifiers(
    built: tuple[Dump, Path, Path], tmp_path: Path
) -> None:
    dump, pepper, _ = built
    build = cli("build", dump.sources_toml, "--out", tmp_path / "index", "--pepper-file",
                pepper, "--shards", "2")
    info = cli("info", tmp_path / "index")
    assert build.returncode == info.returncode == 0, build.stderr + info.stderr
    for output in (build.stdout, info.stdout):
        assert "bad rows 4 (invalid_birth_date 1, invalid_nir 1, malformed_row 1, " \
            "missing_birth_date 1, no_key 2)" in output
        assert "alpha-2024" in output and "beta-2024" in output
    assert "published gen-" in build.stdout and "timings: fingerprint" in build.stdout
    generation = current_generation(tmp_path / "index")
    assert f"generation {generation.name}" in info.stdout
    assert "key id" in info.stdout and "fingerprints 6" in info.stdout
    everything = build.stdout + build.stderr + info.stdout + info.stderr
    assert [form for form in _forms(dump) if form in everything] == []


def test_info_json(built: tuple[Dump, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    dump, _, index_dir = built
    assert main(["info", str(index_dir), "--json"]) == 0
    output = capsys.readouterr().out
    summary = orjson.loads(output)
    assert summary["format"] == "exposure-index/2"
    assert summary["generation"] == current_generation(index_dir).name
    assert len(summary["key_id"]) == 32
    assert summary["shards"] == 2 and summary["bytes"] > 0
    assert summary["totals"] == {"rows": 6, "bad_rows": 4, "fingerprints": 6}
    assert summary["similar_entries"] > 6  # one letter deleted, at each position
    alpha, beta = summary["sources"]
    assert (alpha["id"], alpha["faults"], alpha["records_indexed"]) == (
        "alpha-2024", ALPHA_FAULTS, 2)
    assert beta["classes"] == {"name": 1, "birth_date": 1, "nir": 1, "birth_rank": 0,
                               "insurer": 0, "marital_status": 1, "tp_guarantee": 0}
    assert [form for form in _forms(dump) if form in output] == []


def test_info_and_verify_without_an_index(tmp_path: Path) -> None:
    for command in ("info", "verify"):
        run = cli(command, tmp_path)
        assert run.returncode == 1
        assert "no index" in run.stderr and "exposure-index build" in run.stderr


# --- verify -------------------------------------------------------------------------------


def test_verify_a_sound_index(built: tuple[Dump, Path, Path]) -> None:
    run = cli("verify", built[2])
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"{current_generation(built[2]).name}: OK"


def _files(generation: Path) -> list[Path]:
    return sorted(p for p in generation.rglob("*") if p.is_file())


@contextmanager
def _flipped(path: Path, position: int, mask: int) -> Iterator[None]:
    data = path.read_bytes()
    damaged = bytearray(data)
    damaged[position] ^= mask
    path.write_bytes(bytes(damaged))
    try:
        yield
    finally:
        path.write_bytes(data)


def test_verify_catches_a_flipped_byte_anywhere(index_copy: Path) -> None:
    """Every byte of every file of the generation, each flipped in turn (one bit, and
    the whole byte): the manifest too, whitespace included."""
    generation = current_generation(index_copy)
    files = _files(generation)
    assert {p.suffix for p in files} == {".json", ".fp", ".meta", ".bloom", ".sim", ".simoff",
                                         ".simrows"}
    missed = []
    for path in files:
        for position in range(path.stat().st_size):
            for mask in (0x01, 0xFF):
                with _flipped(path, position, mask):
                    if not verify_generation(generation):
                        missed.append((path.name, position, mask))
    assert missed == []
    assert verify_generation(generation) == []


def _largest(generation: Path, pattern: str) -> Path:
    # With 4 fingerprints in 2 shards, one shard may be empty (the pepper is random).
    return max(generation.glob(pattern), key=lambda p: (p.stat().st_size, p.name))


@pytest.mark.parametrize("pattern", ["manifest.json", "shards/*.fp", "shards/*.meta",
                                     "shards/*.bloom", "shards/*.sim", "shards/*.simoff",
                                     "shards/*.simrows"])
def test_verify_exits_non_zero_on_a_flipped_byte(index_copy: Path, pattern: str) -> None:
    generation = current_generation(index_copy)
    path = _largest(generation, pattern)
    with _flipped(path, path.stat().st_size // 2, 0x10):
        run = cli("verify", index_copy)
    assert run.returncode == 1
    assert "FAULT" in run.stderr and path.relative_to(generation).as_posix() in run.stderr


def test_verify_catches_a_truncated_a_missing_and_an_extra_file(index_copy: Path) -> None:
    generation = current_generation(index_copy)
    fp = _largest(generation, "shards/*.fp")
    name = fp.relative_to(generation).as_posix()
    original = fp.read_bytes()
    fp.write_bytes(original[:-8])
    run = cli("verify", index_copy)
    assert run.returncode == 1 and f"{name}: size" in run.stderr
    assert "truncated" in run.stderr
    fp.unlink()
    run = cli("verify", index_copy)
    assert run.returncode == 1 and f"{name}: missing" in run.stderr
    fp.write_bytes(original)
    (generation / "shards" / "001.spill").write_bytes(b"")
    run = cli("verify", index_copy)
    assert run.returncode == 1 and "shards/001.spill: not part of the generation" in run.stderr


def test_info_and_verify_ignore_a_partial_generation(index_copy: Path) -> None:
    partial = index_copy / "gen-29991231T235959.000000Z-000000.partial"
    (partial / "shards").mkdir(parents=True)
    (partial / "manifest.json").write_text("{not json")
    (partial / "shards" / "000.fp").write_bytes(os.urandom(10))
    current = current_generation(index_copy).name
    verify = cli("verify", index_copy)
    info = cli("info", index_copy)
    assert verify.returncode == info.returncode == 0
    assert verify.stdout.strip() == f"{current}: OK"
    assert current in info.stdout and "partial" not in info.stdout
