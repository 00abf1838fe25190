"""The builder on real artefacts: dumps written to tmp_path, built by the real builder,
read back from disk.

What an index must never hold (identifiers in any form), what a killed build must
never leave visible, and what the operator is told (counts per reason, never content).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from conftest import Breach, write_pepper
from index_support import (
    ALPHA_FAULTS,
    ROOT,
    Dump,
    cli,
    dump_rows,
    encoded,
    files_under,
    identifier_forms,
    leaks,
    write_dump,
)

from indexer.build.local import BuildOptions, build_index
from indexer.build.synth import write_synthetic_breach
from indexer.core.fingerprint import Fingerprinter, PepperError, load_pepper
from indexer.index.generation import CURRENT, PARTIAL_SUFFIX, current_generation
from indexer.index.manifest import load_manifest, verify_generation
from indexer.index.reader import IndexReader


@pytest.fixture
def dump(tmp_path: Path) -> Dump:
    return write_dump(tmp_path / "dump")


def _generations(index_dir: Path) -> list[Path]:
    return sorted(p for p in index_dir.glob("gen-*") if p.is_dir())


# --- bad rows ------------------------------------------------------------------------------


def test_bad_rows_are_counted_per_reason(dump: Dump, tmp_path: Path) -> None:
    report = dump.build(tmp_path / "index", os.urandom(32))
    alpha, beta = report.manifest["sources"]
    assert alpha["faults"] == ALPHA_FAULTS
    assert (alpha["rows"], alpha["bad_rows"], alpha["records_indexed"]) == (5, 4, 2)
    assert (beta["rows"], beta["bad_rows"], beta["records_indexed"], beta["faults"]) == (
        1, 0, 1, {})
    assert report.manifest["totals"]["bad_rows"] == 4
    # The same counts are on disk, for `info` and the service.
    assert load_manifest(report.generation)["sources"][0]["faults"] == ALPHA_FAULTS


def test_spill_and_partial_files_do_not_survive(dump: Dump, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    report = dump.build(index_dir, os.urandom(32))
    assert sorted(p.name for p in index_dir.iterdir()) == [
        ".build.lock", CURRENT, report.generation.name]
    assert (index_dir / ".build.lock").stat().st_size == 0
    assert [p.relative_to(report.generation).as_posix() for p in files_under(report.generation)] \
        == ["manifest.json"] + [f"shards/{n:03d}.{kind}" for n in range(2)
                                for kind in ("bloom", "fp", "meta", "sim", "simoff", "simrows")]
    assert os.readlink(index_dir / CURRENT) == report.generation.name  # relative link


# --- privacy -----------------------------------------------------------------------------


def test_no_identifier_of_the_dump_in_any_file_or_output(dump: Dump, tmp_path: Path) -> None:
    """Every NIR, name and date of the hand-written dump, in every form it could be
    written in, is absent from every byte of every file under the index directory,
    from their names, from the build's output and from the temporary directory."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    pepper = write_pepper(tmp_path / "pepper.key")
    index_dir = tmp_path / "index"
    built = cli("build", dump.sources_toml, "--out", index_dir, "--pepper-file", pepper,
                "--workers", "2", env={"TMPDIR": str(temp)})
    assert built.returncode == 0, built.stderr
    info = cli("info", index_dir)
    forms: set[str] = set()
    for name in ("alpha.csv", "beta.csv"):
        for row in dump_rows(dump.dir / name):
            forms |= identifier_forms(row)
    forms |= {"1710699350", "Xanthopoulos", "XANTHOPOULOS"}  # the malformed row
    assert len(forms) > 40
    needles = encoded(forms)
    assert leaks(index_dir, needles, min_length=4) == []
    for output in (built.stdout, built.stderr, info.stdout, info.stderr):
        assert [form for form in forms if len(form) >= 4 and form in output] == []
    assert list(temp.iterdir()) == []


def _manifest_tokens(value: object) -> set[str]:
    """Every key and string value of a JSON document, upper case and alphanumeric."""
    if isinstance(value, dict):
        return {token for key, item in value.items()
                for token in _manifest_tokens(key) | _manifest_tokens(item)}
    if isinstance(value, list):
        return {token for item in value for token in _manifest_tokens(item)}
    if isinstance(value, str):
        return {"".join(ch for ch in value.upper() if ch.isalnum())}
    return set()


def test_no_identifier_of_the_synthetic_breach_in_the_index(breach: Breach) -> None:
    forms: set[str] = set()
    for name, encoding in (("viamedis.csv", "cp1252"), ("almerys.csv", "utf-8")):
        for row in dump_rows(breach.dir / name, encoding):
            forms |= identifier_forms(row)
    assert len(forms) > 10_000
    # Byte search of every file: forms of 6 bytes and more (shorter ones, such as the
    # name LY, occur by chance in kilobytes of random fingerprints).
    assert leaks(breach.index_dir, encoded(forms), min_length=6) == []
    # The manifest is text: no key or value of it is an identifier, whatever its length.
    for generation in _generations(breach.index_dir):
        tokens = _manifest_tokens(orjson.loads((generation / "manifest.json").read_bytes()))
        folded = {"".join(ch for ch in form.upper() if ch.isalnum()) for form in forms}
        assert tokens & folded == set()


# --- determinism --------------------------------------------------------------------------


def test_one_and_two_workers_write_byte_identical_shards(breach: Breach, tmp_path: Path) -> None:
    pepper = breach.pepper_file.read_bytes()
    generations = []
    for workers in (1, 2):
        # Small blocks: many of them in flight, finishing out of order.
        options = BuildOptions(shards=4, workers=workers, block_size=1 << 14)
        generations.append(
            build_index(breach.sources_toml, tmp_path / f"w{workers}", pepper, options).generation
        )
    one, two = generations
    names = [p.relative_to(one) for p in files_under(one)]
    assert names == [p.relative_to(two) for p in files_under(two)]
    for name in names:
        if name.name != "manifest.json":
            assert (one / name).read_bytes() == (two / name).read_bytes(), name
    manifests = [load_manifest(g) for g in generations]
    for manifest in manifests:
        for key in ("generation", "created", "manifest_xxh3_64"):
            del manifest[key]
    assert manifests[0] == manifests[1]


# --- publication ---------------------------------------------------------------------------


def test_builds_keep_the_last_three_generations(dump: Dump, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    pepper = os.urandom(32)
    published = [dump.build(index_dir, pepper).generation for _ in range(5)]
    assert len({p.name for p in published}) == 5
    assert current_generation(index_dir) == published[-1]
    assert len(_generations(index_dir)) == 3
    assert published[-1] in _generations(index_dir)


def test_a_second_build_at_the_same_time_is_refused(dump: Dump, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    pepper = write_pepper(tmp_path / "pepper.key")
    first = dump.build(index_dir, pepper.read_bytes()).generation
    # This process holds the lock, as a running build would.
    fd = os.open(index_dir / ".build.lock", os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = cli("build", dump.sources_toml, "--out", index_dir, "--pepper-file", pepper)
    finally:
        os.close(fd)
    assert refused.returncode == 1
    assert "another build is running" in refused.stderr
    assert _generations(index_dir) == [first]
    assert current_generation(index_dir) == first


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_a_build_killed_mid_way_leaves_the_previous_generation(
    dump: Dump, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    pepper = write_pepper(tmp_path / "pepper.key")
    previous = dump.build(index_dir, pepper.read_bytes()).generation
    big = tmp_path / "big"
    write_synthetic_breach(big, records=300_000, seed=7, workers=1)
    builder = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "build", str(big / "sources.toml"),
         "--out", str(index_dir), "--pepper-file", str(pepper), "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
        start_new_session=True,
    )
    try:
        def spilling() -> bool:
            sizes = []
            for spill in index_dir.glob(f"gen-*{PARTIAL_SUFFIX}/spill/*.bin"):
                try:
                    sizes.append(spill.stat().st_size)
                except FileNotFoundError:  # the shard pass deletes them
                    pass
            return any(sizes)
        _wait_for(spilling, 60, "the build to start spilling")
        assert builder.poll() is None, "the build finished before it could be killed"
        builder.send_signal(signal.SIGKILL)
        assert builder.wait(10) == -signal.SIGKILL
        # The workers die with the builder instead of lingering as orphans.
        _wait_for(lambda: not _group_alive(builder.pid), 10, "the workers to exit")
    finally:
        if _group_alive(builder.pid):
            os.killpg(builder.pid, signal.SIGKILL)
            builder.wait()

    partials = list(index_dir.glob(f"gen-*{PARTIAL_SUFFIX}"))
    assert len(partials) == 1
    assert current_generation(index_dir) == previous
    assert os.readlink(index_dir / CURRENT) == previous.name
    # What the killed build left holds fingerprints only.
    sample: set[str] = set()
    for name, encoding in (("viamedis.csv", "cp1252"), ("almerys.csv", "utf-8")):
        for row in dump_rows(big / name, encoding, limit=2000):
            sample |= identifier_forms(row)
    assert leaks(partials[0], encoded(sample), min_length=8) == []
    # info and verify look at the current generation only.
    verified = cli("verify", index_dir)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip() == f"{previous.name}: OK"
    info = cli("info", index_dir)
    assert info.returncode == 0 and previous.name in info.stdout
    assert PARTIAL_SUFFIX not in info.stdout
    assert verify_generation(previous) == []
    reader = IndexReader.open_current(index_dir, Fingerprinter(pepper.read_bytes()))
    assert reader.path == previous
    reader.close()

    # The next build removes what the killed one left, and publishes.
    following = dump.build(index_dir, pepper.read_bytes()).generation
    assert list(index_dir.glob(f"gen-*{PARTIAL_SUFFIX}")) == []
    assert current_generation(index_dir) == following != previous


def test_bad_options_are_refused_before_the_index_is_touched(
    dump: Dump, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    for options in (BuildOptions(bloom_error_rate=0.9), BuildOptions(shards=0),
                    BuildOptions(workers=-1)):
        with pytest.raises(ValueError):
            build_index(dump.sources_toml, index_dir, os.urandom(32), options)
    assert not index_dir.exists()


def test_a_build_that_fails_late_leaves_nothing_behind(dump: Dump, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    # `current` is a directory: the very last step, switching the link, fails.
    (index_dir / CURRENT).mkdir(parents=True)
    (index_dir / CURRENT / "not-ours").write_text("")
    with pytest.raises(OSError):
        dump.build(index_dir, os.urandom(32))
    assert sorted(p.name for p in index_dir.iterdir()) == [".build.lock", CURRENT]


# --- fingerprints ----------------------------------------------------------------------------

KEYS = ["strong|294037512001779|1994-03-15", "weak|QUINTAVALLEBRUCKNER|ZELIEHORTENSE|1994-03-15"]


def test_fingerprints_are_keyed_by_the_pepper() -> None:
    first, second = os.urandom(32), os.urandom(32)
    a, b = Fingerprinter(first), Fingerprinter(second)
    assert a.many(KEYS).tolist() != b.many(KEYS).tolist()
    assert set(a.many(KEYS).tolist()).isdisjoint(b.many(KEYS).tolist())
    assert a.many(KEYS).tolist() == Fingerprinter(first).many(KEYS).tolist()
    assert a.key_id != b.key_id
    assert a.key_id == Fingerprinter(first).key_id
    # Not an unkeyed hash of the key, and the key id is not the pepper.
    unkeyed = [int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "little")
               for k in KEYS]
    assert a.many(KEYS).tolist() != unkeyed
    assert first.hex() not in a.key_id
    assert [a.one(k) for k in KEYS] == a.many(KEYS).tolist()


def test_a_different_pepper_gives_a_disjoint_index(dump: Dump, tmp_path: Path) -> None:
    one = dump.build(tmp_path / "one", os.urandom(32))
    two = dump.build(tmp_path / "two", os.urandom(32))
    fps = [
        b"".join((r.generation / f"shards/{n:03d}.fp").read_bytes() for n in range(2))
        for r in (one, two)
    ]
    assert len(fps[0]) == len(fps[1]) == 8 * one.manifest["totals"]["fingerprints"]
    chunks = [{f[i : i + 8] for i in range(0, len(f), 8)} for f in fps]
    assert chunks[0].isdisjoint(chunks[1])
    assert one.manifest["key_id"] != two.manifest["key_id"]


def test_pepper_files(tmp_path: Path) -> None:
    raw = write_pepper(tmp_path / "raw.key", bytes(range(32)))
    hexa = write_pepper(tmp_path / "hex.key", bytes(range(32)).hex().encode() + b"\n")
    assert load_pepper(raw) == load_pepper(hexa) == bytes(range(32))
    short = write_pepper(tmp_path / "short.key", b"x" * 31)
    with pytest.raises(PepperError, match="at least 32"):
        load_pepper(short)
    with pytest.raises(PepperError, match="cannot read"):
        load_pepper(tmp_path / "missing.key")
    with pytest.raises(PepperError):
        Fingerprinter(b"too short")
