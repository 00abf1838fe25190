"""The index build on a Dask cluster (`exposure-index build --engine dask`).

The local engine's two passes, with the same functions, spread over the workers of an
existing cluster; the shard files it publishes are byte-identical to the local
engine's. Tasks carry byte ranges of the dumps, never rows. The pipeline, its memory
and why the pepper may go to the workers: docs/design.md §4, "The build on a Dask
cluster". Never put the pepper in a task key, a task's repr, a log or a file.
"""

from __future__ import annotations

import functools
import importlib
import ipaddress
import os
import secrets
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import xxhash
from tqdm import tqdm

from indexer.build.dumps import DumpError, DumpLayout, iter_blocks
from indexer.build.local import (
    SPILL_DTYPE,
    BlockSpill,
    BuildOptions,
    BuildPlan,
    BuildReport,
    GenerationBuilt,
    ShardResult,
    SourceCounts,
    fingerprint_block,
    finish_generation,
    plan_build,
    publish_build,
    write_shard,
)
from indexer.core.fingerprint import Fingerprinter

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "DASK_BLOCK_SIZE",
    "ClusterBuildFailed",
    "PipelineMismatch",
    "WorkerPepper",
    "build_index_on_dask",
    "is_encrypted_address",
]

# Larger than the local engine's 4 MiB: every block costs 2 + --shards tasks to the
# scheduler (~1 ms each). ~190 blocks for 33 million synthetic records (93 bytes a row);
# a worker needs ~75 MB above its own footprint for one (measured: 30 MB for 7 MB).
DASK_BLOCK_SIZE: Final = 16 << 20

# The modules whose code decides the bytes of a shard: rows, normalisation, keys,
# fingerprints, shard rule, merge, Bloom filter.
_PIPELINE_MODULES: Final = (
    "build/local", "build/dumps", "core/columns", "core/records", "core/identity",
    "core/matchkeys", "core/fingerprint", "index/shards", "index/bloom",
)


class ClusterBuildFailed(Exception):
    """The cluster could not run the build (the message says why, never with row content)."""


class PipelineMismatch(ClusterBuildFailed):
    """A worker runs another version of the indexer than the client."""


@dataclass(frozen=True, slots=True)
class WorkerPepper:
    """The pepper on its way to the workers, with a repr that does not show it.

    Dask writes the repr of a failed task, arguments included, to the worker's log
    ("Compute Failed"); the default repr of bytes would put the pepper there.
    """

    value: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "WorkerPepper(<redacted>)"

    def __dask_tokenize__(self) -> str:
        # Task keys are given explicitly; should Dask ever hash the arguments, it must
        # not be an unkeyed hash of the pepper that ends up in a key or a log.
        return "exposure-worker-pepper"


class BlockRange(NamedTuple):
    """One block of a dump, as the client found it: what a fingerprint task reads."""

    source_index: int
    start: int
    end: int
    file_size: int  # the dump's size as the client saw it


@functools.cache
def pipeline_digest() -> str:
    """A digest of the source code that decides the bytes of a shard.

    A worker from an older image would otherwise fingerprint with other rules and
    publish an index that verifies but answers "not found" for the rows it handled.
    """
    digest = xxhash.xxh3_64()
    package = Path(__file__).resolve().parent.parent  # indexer/
    for module in _PIPELINE_MODULES:
        digest.update((package / f"{module}.py").read_bytes())
    return digest.hexdigest()


# --- tasks (run on the workers) ---------------------------------------------------------


def fingerprint_range(
    block: BlockRange, layout: DumpLayout, shards: int, pepper: WorkerPepper, pipeline: str
) -> BlockSpill:
    """Read one block of a dump from the shared filesystem and fingerprint it."""
    if pipeline != pipeline_digest():
        raise PipelineMismatch(
            f"worker {socket.gethostname()} runs another version of the indexer than the "
            "client: install the same version on the client and every worker"
        )
    path = layout.path
    try:
        with path.open("rb") as dump:
            size = os.fstat(dump.fileno()).st_size
            dump.seek(block.start)
            data = dump.read(block.end - block.start)
    except OSError as exc:
        raise DumpError(
            f"{path}: worker {socket.gethostname()} cannot read the dump "
            f"({exc.strerror or exc}); the dumps must be on a filesystem that every "
            "worker mounts at the same path"
        ) from exc
    if size != block.file_size or len(data) != block.end - block.start:
        raise DumpError(
            f"{path}: worker {socket.gethostname()} sees {size} bytes, the client "
            f"{block.file_size}: the dumps must be on a filesystem shared by every "
            "worker, and must not change during the build"
        )
    return fingerprint_block(
        data, layout, block.source_index, shards, Fingerprinter(pepper.value)
    )


def block_counts(spilled: BlockSpill) -> BlockSpill:
    """The counts of a block without its entries: what the client gathers."""
    return spilled._replace(payload=b"")


def shard_slice(spilled: BlockSpill, shard: int) -> npt.NDArray[np.void]:
    """The entries of one shard in a block's result (a copy: the block can then go)."""
    per_shard = spilled.per_shard
    start = int(per_shard[:shard].sum())
    return np.frombuffer(
        spilled.payload, dtype=SPILL_DTYPE, count=int(per_shard[shard]),
        offset=start * SPILL_DTYPE.itemsize,
    ).copy()


def build_shard_from_slices(
    generation: Path, shard: int, slices: Sequence[npt.NDArray[np.void]], n_sources: int,
    error_rate: float, shard_count: int,
) -> ShardResult:
    entries = np.concatenate(slices) if slices else np.empty(0, dtype=SPILL_DTYPE)
    return write_shard(generation, shard, entries, n_sources, error_rate, shard_count)


# --- the client -------------------------------------------------------------------------


def build_index_on_dask(
    sources_toml: Path, index_dir: Path, pepper: bytes, options: BuildOptions | None = None,
    *, scheduler: str | Client,
) -> BuildReport:
    """Build and publish a new generation on a Dask cluster (see the module docstring).

    `scheduler` is an address (`tls://host:8786`) or a connected `distributed.Client`
    (not closed here). Bad input is refused before the cluster or `index_dir` is
    touched; a failed build is cancelled on the cluster and its partial generation
    removed. `options.workers` does not apply: the cluster's workers do the work.
    """
    options = options or BuildOptions(block_size=DASK_BLOCK_SIZE)
    if options.private is not None:
        raise ValueError(
            "--private is not built on Dask yet: build the private part with the local engine"
        )
    started = time.monotonic()
    plan = plan_build(sources_toml, pepper, options)
    # Workers resolve paths in their own working directory: give them absolute ones.
    index_dir = index_dir.absolute()
    with _connected(scheduler) as client:
        return publish_build(
            index_dir, started,
            lambda generation: _build_generation(client, generation, plan, pepper, options),
        )


def _distributed() -> Any:
    """The `distributed` package, imported on first use: the local engine and the
    service never need it. Typed as Any: most of its API is not annotated."""
    try:
        return importlib.import_module("distributed")
    except ImportError as exc:
        raise ValueError(
            "--engine dask needs the dask[distributed] package: "
            "pip install 'dask[distributed]'"
        ) from exc


@contextmanager
def _connected(scheduler: str | Client) -> Iterator[Any]:
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    # TLS certificates come from Dask's configuration (see deploy/README.md).
    client = distributed.Client(scheduler, set_as_default=False)
    try:
        yield client
    finally:
        client.close()


def is_encrypted_address(address: str) -> bool:
    """Whether the pepper would travel to this scheduler encrypted (or not travel at all).

    `tls://` is; `inproc://` and loopback addresses do not leave the machine.
    """
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme in ("tls", "inproc"):
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _block_ranges(
    layouts: Sequence[DumpLayout], block_size: int
) -> Iterator[tuple[BlockRange, DumpLayout]]:
    """Every block of every dump as a byte range, in the local engine's order.

    `iter_blocks` does the cutting (its blocks concatenate to the data part exactly),
    so both engines see the same records; only the offsets are kept.
    """
    for index, layout in enumerate(layouts):
        size = layout.path.stat().st_size
        start = layout.data_offset
        for block in iter_blocks(layout, block_size):
            yield BlockRange(index, start, start + len(block), size), layout
            start += len(block)


def _build_generation(
    client: Any, generation: Path, plan: BuildPlan, pepper: bytes, options: BuildOptions
) -> GenerationBuilt:
    as_completed = _distributed().as_completed
    phases: dict[str, float] = {}
    clock = time.monotonic()
    # One build's keys never collide with another's on a shared scheduler.
    prefix = f"exposure-build-{secrets.token_hex(6)}"
    worker_pepper = WorkerPepper(pepper)
    pipeline = pipeline_digest()
    counts = [SourceCounts() for _ in plan.sources]
    slices: list[list[Any]] = [[] for _ in range(options.shards)]
    shard_futures: list[Any] = []
    counts_futures: list[Any] = []  # small results, kept to cancel them on failure
    counted = as_completed(loop=client.loop)
    total_bytes = sum(layout.path.stat().st_size - layout.data_offset for layout in plan.layouts)
    bar = tqdm(total=total_bytes, disable=not options.progress, unit="B", unit_scale=True,
               desc="fingerprint")

    def count(done: Sequence[Any]) -> None:
        for future in done:
            spilled: BlockSpill = future.result()
            counts[spilled.source_index].add(spilled)
            bar.update(spilled.block_bytes)

    try:
        for n, (block, layout) in enumerate(_block_ranges(plan.layouts, options.block_size)):
            spilled = client.submit(
                fingerprint_range, block, layout, options.shards, worker_pepper, pipeline,
                key=f"{prefix}-fingerprint-{n}",
            )
            # Higher priority than the next blocks: a block's result is split (and
            # released) before more blocks are fingerprinted.
            counts_futures.append(
                client.submit(block_counts, spilled, key=f"{prefix}-counts-{n}", priority=1)
            )
            counted.add(counts_futures[-1])
            for shard, shard_slices in enumerate(slices):
                shard_slices.append(client.submit(
                    shard_slice, spilled, shard, key=f"{prefix}-slice-{n}-{shard}", priority=1,
                ))
            # The client keeps no reference to the block's result: once its slices and
            # counts are taken, the cluster frees it.
            del spilled
            count(counted.next_batch(block=False))
        shard_futures = [
            client.submit(
                build_shard_from_slices, generation, shard, shard_slices, len(plan.sources),
                options.bloom_error_rate, options.shards, key=f"{prefix}-shard-{shard}",
            )
            for shard, shard_slices in enumerate(slices)
        ]
        slices = []
        for batch in counted.batches():
            count(batch)
        phases["fingerprint"], clock = time.monotonic() - clock, time.monotonic()
        shard_results: list[ShardResult] = []
        built = as_completed(shard_futures, loop=client.loop)
        for future in tqdm(built, total=len(shard_futures), disable=not options.progress,
                           desc="shards", unit="shard"):
            shard_results.append(future.result())
        phases["shards"] = time.monotonic() - clock
    except BaseException as exc:
        # Stop what has not run yet; the caller removes the partial generation. A
        # shard task already running may still write into it: the directory then
        # stays as a .partial, which the next build removes.
        client.cancel([*counts_futures, *shard_futures, *(f for s in slices for f in s)])
        if isinstance(exc, _distributed().KilledWorker):
            raise ClusterBuildFailed(
                f"workers died while running the build ({exc}); see the workers' logs "
                "(memory limit?)"
            ) from exc
        raise
    finally:
        bar.close()
    # `workers` is for the private part, which this engine refuses.
    return finish_generation(generation, plan, counts, shard_results, options, phases, workers=1)
