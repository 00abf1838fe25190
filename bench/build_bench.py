"""Build throughput and peak memory of `exposure-index build` (docs/design.md §6).

Target: 33 million synthetic records in at most 5 minutes on 2 cores (>= 110,000
records/s), peak memory <= 4 GiB and flat in the input size.

For each size N, a synthetic breach of N records is written once into a cache
directory (re-used by later runs), then `exposure-index build` runs as a subprocess
with the default worker count, exactly as an operator runs it. While it runs, the
whole process tree (the builder and its worker processes) is sampled from /proc:

- `rss_tree`: the sum of the RSS of every process of the tree (what `top` adds up;
  it counts twice the pages that forked workers share with the parent);
- `pss_tree`: the sum of their PSS (shared pages split between sharers): the memory
  the build really takes from the machine;
- `maxrss_one`: `getrusage(RUSAGE_CHILDREN).ru_maxrss`, the largest single process.

CPU seconds (user + system of the whole tree) are reported next to the wall time: on
a shared machine the wall time depends on what else runs, records per CPU-second
does not. The 1-minute load average before and after is printed for that reason.

    python bench/build_bench.py                 # 1M records
    python bench/build_bench.py --full          # 1M, 3M and 10M
    python bench/build_bench.py --records 3000000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = ROOT / "var" / "bench-cache"
TARGET_RATE = 110_000
TARGET_RECORDS = 33_000_000
MEMORY_LIMIT = 4 << 30
SEED = 20240129
# Bumped when `exposure-index synth` writes other files for the same seed (2: the member
# file carries every kind of typing difference, and members-expected.csv its `kind`).
SYNTH_FORMAT = "2"


@dataclass
class Result:
    records: int
    workers: str
    wall_s: float
    records_per_s: float
    cpu_s: float
    records_per_cpu_s: float
    rss_tree_peak_mib: float
    pss_tree_peak_mib: float
    maxrss_one_mib: float
    load_before: float
    load_after: float
    build_output: str


def _exe() -> list[str]:
    script = Path(sys.executable).with_name("exposure-index")
    return [str(script)] if script.exists() else [sys.executable, "-m", "indexer.cli"]


def ensure_synth(cache: Path, records: int) -> Path:
    """The cached synthetic breach of `records` rows (written on first use, and again
    when the cache was written by a generator of another SYNTH_FORMAT; the serving
    index built from an outdated breach goes with it)."""
    target = cache / f"synth-{records}-{SEED}"
    done = target / ".complete"
    if done.exists() and done.read_text().strip() == SYNTH_FORMAT:
        return target
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(cache / f"serve-{records}", ignore_errors=True)
    print(f"synth: writing {records:,} records into {target} (cached for later runs)")
    subprocess.run(
        [*_exe(), "synth", "--out", str(target), "--records", str(records), "--seed", str(SEED)],
        check=True, stdout=subprocess.DEVNULL,
    )
    done.write_text(SYNTH_FORMAT + "\n")
    return target


def ensure_pepper(cache: Path) -> Path:
    pepper = cache / "pepper.key"
    if not pepper.exists():
        pepper.write_bytes(os.urandom(32))
    pepper.chmod(0o600)
    return pepper


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as stream:
                found.extend(int(child) for child in stream.read().split())
    except OSError:
        pass
    return found


def _tree(pid: int) -> list[int]:
    pids, stack = [], [pid]
    while stack:
        current = stack.pop()
        pids.append(current)
        stack.extend(_children(current))
    return pids


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; (0, 0) once it has gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as stream:
            for line in stream:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class TreeSampler(threading.Thread):
    """Samples the summed RSS and PSS of a process tree until stopped."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            rss = pss = 0
            for pid in _tree(self.pid):
                one_rss, one_pss = _memory_kib(pid)
                rss, pss = rss + one_rss, pss + one_pss
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def run_build(synth: Path, pepper: Path, out: Path, workers: int | None,
              keep: bool = False) -> Result:
    """One measured build into `out` (emptied first); `keep` leaves the index there."""
    shutil.rmtree(out, ignore_errors=True)
    records = _count_records(synth)
    command = [*_exe(), "build", str(synth / "sources.toml"), "--out", str(out),
               "--pepper-file", str(pepper)]
    if workers is not None:
        command += ["--workers", str(workers)]
    load_before = os.getloadavg()[0]
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    sampler = TreeSampler(process.pid)
    sampler.start()
    output, _ = process.communicate()
    wall = time.perf_counter() - started
    sampler.stop()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise SystemExit(f"build failed ({process.returncode}):\n{output}")
    cpu = (usage.ru_utime + usage.ru_stime) - (usage_before.ru_utime + usage_before.ru_stime)
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return Result(
        records=records,
        workers="default" if workers is None else str(workers),
        wall_s=round(wall, 2),
        records_per_s=round(records / wall),
        cpu_s=round(cpu, 2),
        records_per_cpu_s=round(records / cpu) if cpu else 0,
        rss_tree_peak_mib=round(sampler.peak_rss / 1024, 1),
        pss_tree_peak_mib=round(sampler.peak_pss / 1024, 1),
        maxrss_one_mib=round(usage.ru_maxrss / 1024, 1),
        load_before=round(load_before, 2),
        load_after=round(os.getloadavg()[0], 2),
        build_output=output.strip(),
    )


def _count_records(synth: Path) -> int:
    return int(synth.name.split("-")[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, action="append", metavar="N",
                        help="input size (repeatable; default 1,000,000)")
    parser.add_argument("--full", action="store_true", help="1M, 3M and 10M records")
    parser.add_argument("--workers", type=int, default=None, help="default: the builder's")
    parser.add_argument("--repeat", type=int, default=1, help="builds per size (best kept)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    sizes = args.records or ([1_000_000, 3_000_000, 10_000_000] if args.full else [1_000_000])
    cache: Path = args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    pepper = ensure_pepper(cache)
    results: list[Result] = []
    print(f"{os.cpu_count()} CPUs; target >= {TARGET_RATE:,} records/s, "
          f"peak memory <= {MEMORY_LIMIT >> 30} GiB")
    for size in sizes:
        synth = ensure_synth(cache, size)
        runs = [run_build(synth, pepper, cache / "index", args.workers)
                for _ in range(max(1, args.repeat))]
        best = max(runs, key=lambda r: r.records_per_s)
        results.append(best)
        print(
            f"{best.records:>11,} records  {best.wall_s:7.1f} s  {best.records_per_s:>9,} rec/s  "
            f"cpu {best.cpu_s:6.1f} s ({best.records_per_cpu_s:,} rec/cpu-s)  "
            f"peak rss(tree) {best.rss_tree_peak_mib:,.0f} MiB  "
            f"pss(tree) {best.pss_tree_peak_mib:,.0f} MiB  "
            f"max one {best.maxrss_one_mib:,.0f} MiB  "
            f"load {best.load_before:.1f}->{best.load_after:.1f}"
        )
        timings = [line for line in best.build_output.splitlines() if "timings" in line]
        if timings:
            print(f"{'':>13}{timings[0].strip()}")
    largest = results[-1]
    projected = TARGET_RECORDS / max(largest.records_per_s, 1)
    print(f"projected for {TARGET_RECORDS:,} records: {projected / 60:.1f} min "
          f"(target 5 min); at {largest.records_per_cpu_s:,} rec/cpu-s two idle cores "
          f"would give ~{2 * largest.records_per_cpu_s:,} rec/s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
