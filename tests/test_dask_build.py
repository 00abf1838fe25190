"""The Dask engine on a real Dask cluster: same dumps and pepper, same index.

A `LocalCluster` of two worker processes (one thread each) stands for the cluster:
its workers unpickle the tasks as remote ones would, read their byte ranges of the
dumps and write the shard files through the filesystem (here trivially shared).
Both engines build from the session's synthetic breach with its pepper.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SYNTH_RECORDS, Breach, query_fields
from distributed import Client, LocalCluster
from index_support import cli, files_under

from indexer.build.dask_engine import (
    BlockRange,
    PipelineMismatch,
    WorkerPepper,
    build_index_on_dask,
    fingerprint_range,
    pipeline_digest,
)
from indexer.build.dumps import DumpError, detect_layout
from indexer.build.local import BuildOptions, BuildReport, build_index
from indexer.build.sources import load_sources
from indexer.core.fingerprint import Fingerprinter
from indexer.core.matchkeys import QueryError, canonical_keys
from indexer.index.generation import CURRENT, current_generation
from indexer.index.lookup import Checker
from indexer.index.manifest import load_manifest, verify_generation
from indexer.index.reader import IndexReader

SHARDS = 4
# Not part of what must match: when and where a generation was built.
PER_BUILD = ("generation", "created", "manifest_xxh3_64")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    # No dashboard, and the scheduler's HTTP routes on a free port rather than 8787,
    # which another cluster on this machine may hold (Dask would warn and move).
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},
    ) as local_cluster:
        yield local_cluster


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster, set_as_default=False) as connected:
        yield connected


@pytest.fixture(scope="module")
def built(
    breach: Breach, client: Client, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, BuildReport]:
    root = tmp_path_factory.mktemp("engines")
    pepper = breach.pepper_file.read_bytes()
    local = build_index(breach.sources_toml, root / "local", pepper,
                        BuildOptions(shards=SHARDS, workers=1))
    # Small blocks: dozens of fingerprint tasks, finishing out of order on two workers.
    dask = build_index_on_dask(breach.sources_toml, root / "dask", pepper,
                               BuildOptions(shards=SHARDS, block_size=1 << 14), scheduler=client)
    return {"local": local, "dask": dask}


def _per_build_removed(manifest: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in manifest.items() if key not in PER_BUILD}


def _shard_files(generation: Path) -> dict[str, bytes]:
    return {path.relative_to(generation).as_posix(): path.read_bytes()
            for path in files_under(generation) if path.name != "manifest.json"}


def test_both_engines_publish_identical_shard_files(
    breach: Breach, built: dict[str, BuildReport]
) -> None:
    local, dask = built["local"].generation, built["dask"].generation
    assert sum(path.stat().st_size for path in breach.dir.glob("*.csv")) > 10 * (1 << 14)
    files = _shard_files(local)
    assert sorted(files) == [f"shards/{n:03d}.{kind}" for n in range(SHARDS)
                             for kind in ("bloom", "fp", "meta", "sim", "simoff", "simrows")]
    assert _shard_files(dask) == files
    # The manifests agree on everything but the build's name and time: counts,
    # sources, faults, classes, key id, checksums.
    manifests = [load_manifest(generation) for generation in (local, dask)]
    assert _per_build_removed(manifests[1]) == _per_build_removed(manifests[0])
    sources = manifests[1]["sources"]
    assert [source["id"] for source in sources] == ["viamedis-2024", "almerys-2024"]
    assert sum(source["rows"] for source in sources) == SYNTH_RECORDS
    assert any(source["faults"] for source in sources)  # bad rows were counted on workers
    assert built["dask"].manifest["totals"] == built["local"].manifest["totals"]


def test_the_dask_index_verifies_and_answers_like_the_local_one(
    breach: Breach, built: dict[str, BuildReport]
) -> None:
    dask = built["dask"].generation
    assert verify_generation(dask) == []
    assert current_generation(dask.parent) == dask
    fingerprinter = Fingerprinter(breach.pepper_file.read_bytes())
    queries = []
    for member in breach.members():
        try:
            queries.append(canonical_keys(query_fields(member)))
        except QueryError:  # a member line with an error
            continue
    verdicts = []
    for name in ("local", "dask"):
        reader = IndexReader(built[name].generation, fingerprinter)
        try:
            verdicts.append(Checker(reader).check_keys(queries))
        finally:
            reader.close()
    assert verdicts[1] == verdicts[0]
    found = sum(verdict["found"] for verdict in verdicts[1])
    assert 0.25 * len(queries) < found < 0.75 * len(queries)  # see test_reader.py


def test_the_cli_builds_on_the_scheduler_it_is_given(
    breach: Breach, cluster: LocalCluster, built: dict[str, BuildReport], tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    address = cluster.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")
    done = cli("build", breach.sources_toml, "--out", index_dir, "--shards", str(SHARDS),
               "--pepper-file", breach.pepper_file, "--engine", "dask", "--scheduler", address)
    assert done.returncode == 0, done.stderr
    assert "published gen-" in done.stdout
    assert "warning" not in done.stderr  # a loopback address does not leave the machine
    verified = cli("verify", index_dir)
    assert verified.returncode == 0, verified.stderr
    assert _shard_files(current_generation(index_dir)) == _shard_files(built["local"].generation)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--engine", "dask"], "--engine dask needs --scheduler ADDRESS"),
        (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler is for --engine dask"),
        (["--engine", "dask", "--scheduler", "tcp://127.0.0.1:8786", "--workers", "2"],
         "--workers is for the local engine"),
        (["--engine", "dask", "--scheduler", "tcp://127.0.0.1:8786", "--private"],
         "--private is not built on Dask"),
        (["--engine", "spark"], "invalid choice: 'spark'"),
    ],
)
def test_engine_flag_errors(
    breach: Breach, tmp_path: Path, flags: list[str], message: str
) -> None:
    index_dir = tmp_path / "index"
    refused = cli("build", breach.sources_toml, "--out", index_dir,
                  "--pepper-file", breach.pepper_file, *flags)
    assert refused.returncode == 2
    assert message in refused.stderr
    assert not index_dir.exists()


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_an_unreachable_scheduler_fails_before_the_index_is_touched(
    breach: Breach, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    failed = cli("build", breach.sources_toml, "--out", index_dir,
                 "--pepper-file", breach.pepper_file, "--engine", "dask",
                 "--scheduler", f"tcp://127.0.0.1:{_unused_port()}",
                 env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"})
    assert failed.returncode == 1
    assert "exposure-index:" in failed.stderr and "Traceback" not in failed.stderr
    assert not index_dir.exists()


def test_a_plain_tcp_scheduler_elsewhere_is_warned_about(breach: Breach, tmp_path: Path) -> None:
    # 192.0.2.1 is TEST-NET-1: never routed, the connection fails after the warning.
    failed = cli("build", breach.sources_toml, "--out", tmp_path / "index",
                 "--pepper-file", breach.pepper_file, "--engine", "dask",
                 "--scheduler", "tcp://192.0.2.1:8786",
                 env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"})
    assert failed.returncode == 1
    assert "is not a tls:// address: the pepper will cross the network in clear" \
        in failed.stderr


def test_the_pepper_stays_out_of_task_reprs_and_worker_logs(client: Client) -> None:
    pepper = os.urandom(32)
    wrapped = WorkerPepper(pepper)
    assert repr(wrapped) == "WorkerPepper(<redacted>)"
    # A failing task: Dask logs its repr, arguments included, on the worker.
    with pytest.raises(TypeError):
        client.submit(int, wrapped, key="exposure-test-failing-task").result()
    logs = "\n".join(message for worker in client.get_worker_logs().values()
                     for _, message in worker)
    assert "exposure-test-failing-task" in logs and "WorkerPepper(<redacted>)" in logs
    assert pepper.hex() not in logs
    assert repr(pepper)[2:-1] not in logs


def test_workers_refuse_a_dump_they_see_otherwise_and_another_indexer(
    breach: Breach, client: Client
) -> None:
    layout = detect_layout(load_sources(breach.sources_toml)[0])
    size = layout.path.stat().st_size
    wrapped = WorkerPepper(breach.pepper_file.read_bytes())
    # What a worker with another copy of the dump (not a shared filesystem) sees.
    other_copy = BlockRange(0, layout.data_offset, size, size + 1)
    with pytest.raises(DumpError, match="shared by every worker"):
        client.submit(fingerprint_range, other_copy, layout, SHARDS, wrapped,
                      pipeline_digest(), key="exposure-test-other-copy").result()
    whole = BlockRange(0, layout.data_offset, size, size)
    with pytest.raises(PipelineMismatch, match="another version of the indexer"):
        client.submit(fingerprint_range, whole, layout, SHARDS, wrapped, "0" * 16,
                      key="exposure-test-other-version").result()


def test_a_dask_build_that_fails_leaves_nothing_behind(
    breach: Breach, client: Client, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    # `current` is a directory: the very last step, switching the link, fails.
    (index_dir / CURRENT).mkdir(parents=True)
    (index_dir / CURRENT / "not-ours").write_text("")
    with pytest.raises(OSError):
        build_index_on_dask(breach.sources_toml, index_dir, breach.pepper_file.read_bytes(),
                            BuildOptions(shards=SHARDS), scheduler=client)
    assert sorted(p.name for p in index_dir.iterdir()) == [".build.lock", CURRENT]
