"""py-spy profiles of a running server, summarised: where does the time go.

`record(pid, seconds, out)` samples a process (py-spy from the venv, idle threads
left out) into py-spy's "raw" collapsed-stack format; `summary(path)` turns that
into the share of samples per function, self and inclusive, and per "bucket"
(aiohttp's HTTP machinery, our middleware, JSON, normalisation, fingerprints,
lookup...), which is what the README and the proposals quote.
"""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

PY_SPY = Path(sys.executable).with_name("py-spy")
_IDLE_LEAVES = ("_worker (concurrent/futures/thread.py", "Condition.wait (threading.py")

# First match wins, tested against each frame from the leaf up (the innermost frame
# that belongs to one of these decides the bucket of a sample).
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fingerprint (BLAKE2b)", ("indexer/core/fingerprint.py",)),
    ("lookup (Bloom + searchsorted)", ("indexer/index/reader.py", "indexer/index/bloom.py",
                                       "indexer/index/shards.py")),
    ("verdict (indexer/index/lookup.py)", ("indexer/index/lookup.py",)),
    ("normalisation (identity, matchkeys)", ("indexer/core/identity.py",
                                             "indexer/core/matchkeys.py", "stdnum/")),
    ("access log", ("logging/", "service/resources/logs.py")),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("JSON (orjson) and CSV", ("orjson", "csv.py")),
    ("bulk route (service/views/batch.py)", ("service/views/batch.py",)),
    ("rate limits, keys", ("service/resources/ratelimit.py", "service/access.py",
                           "service/resources/apikeys.py", "sqlite3")),
    ("middleware (service/middleware.py)", ("service/middleware.py",
                                            "service/resources/inflight.py")),
    ("single-check route (service/views/api.py)", ("service/views/api.py",)),
    ("aiohttp (HTTP parsing, responses)", ("aiohttp/", "multidict/", "yarl/")),
    ("asyncio event loop, sockets", ("asyncio/", "selectors.py", "socket.py")),
)


def record(pid: int, seconds: float, out: Path, rate: int = 200) -> Path:
    # Blocking mode (py-spy pauses the process for each sample): slower, but stacks read
    # from a running process are often torn and charge time to the wrong function.
    subprocess.run(
        [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(int(seconds)),
         "--rate", str(rate), "--format", "raw", "--output", str(out)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        timeout=seconds + 30,
    )
    return out


def _stacks(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        # A thread-pool worker whose innermost frame is its own loop is waiting for
        # work (py-spy counts a blocked lock wait as active): not time spent.
        if stack and count.isdigit() and not frames[-1].startswith(_IDLE_LEAVES):
            stacks.append((frames, int(count)))
    return stacks


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module/path.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(where).parts
    tail = "/".join(parts[-2:]) if parts else where
    return f"{name} ({tail})"


def bucket_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for bucket, markers in BUCKETS:
            if any(marker in frame for marker in markers):
                return bucket
    return "other"


def summary(path: Path, top: int = 12) -> dict[str, object]:
    stacks = _stacks(path)
    total = sum(count for _, count in stacks) or 1
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    buckets: collections.Counter[str] = collections.Counter()
    for stack, count in stacks:
        own[_short(stack[-1])] += count
        for frame in {_short(f) for f in stack}:
            inclusive[frame] += count
        buckets[bucket_of(stack)] += count

    def share(counter: collections.Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, round(100 * c / total, 1)) for name, c in counter.most_common(n)]

    return {"samples": total, "buckets": share(buckets, len(BUCKETS) + 1),
            "self": share(own, top), "inclusive": share(inclusive, top * 2)}


def render(title: str, report: dict[str, object]) -> str:
    lines = [f"### {title} ({report['samples']} samples)", "", "| where | % of samples |",
             "|---|---:|"]
    lines += [f"| {name} | {pct} |" for name, pct in report["buckets"]]  # type: ignore[attr-defined]
    lines += ["", "| function (self time) | % |", "|---|---:|"]
    lines += [f"| `{name}` | {pct} |" for name, pct in report["self"]]  # type: ignore[attr-defined]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(render(name, summary(Path(name))))
        for frame, pct in summary(Path(name))["inclusive"]:  # type: ignore[union-attr]
            print(f"  incl {pct:5.1f}%  {frame}")
