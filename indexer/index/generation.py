"""The on-disk layout of an index and its atomic publication.

    INDEX_DIR/
      current -> gen-20261130T101500.250371Z-3f2a1c   relative symbolic link
      gen-20261130T101500.250371Z-3f2a1c/
        manifest.json                                   sources, counts, key id, checksums
        shards/NNN.bloom  NNN.fp  NNN.meta
      gen-...partial/                                   a build in progress (or killed)
      .build.lock                                       held by the running build

A build writes `gen-<time>-<rand>.partial/`, fsyncs it, renames it without the
suffix, then points `current` at it by renaming a fresh link over the old one:
rename(2) is atomic, so a reader sees either the old generation or the new one,
never a half-written one. A killed build leaves only a `.partial` directory that
nothing points at; the next build removes it.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
from pathlib import Path
from typing import Final

__all__ = [
    "CURRENT",
    "PARTIAL_SUFFIX",
    "IndexNotFound",
    "current_generation",
    "new_partial_generation",
    "publish",
    "remove_partials",
    "shard_file",
]

CURRENT: Final = "current"
PARTIAL_SUFFIX: Final = ".partial"
MANIFEST: Final = "manifest.json"
SHARD_KINDS: Final = ("bloom", "fp", "meta")
_TMP_LINK_PREFIX: Final = f".{CURRENT}-"


class IndexNotFound(Exception):
    """No published generation where one was expected. The message says what to do."""


def shard_file(shard: int, kind: str) -> str:
    """Path of a shard file relative to its generation directory."""
    return f"shards/{shard:03d}.{kind}"


def current_generation(index_dir: Path) -> Path:
    """The generation directory `INDEX_DIR/current` points at, resolved."""
    link = index_dir / CURRENT
    if not link.is_symlink() and not link.exists():
        raise IndexNotFound(
            f"no index at {index_dir}: {link} does not exist "
            f"(build one with: exposure-index build SOURCES_TOML --out {index_dir})"
        )
    target = link.resolve()
    if not (target / MANIFEST).is_file():
        raise IndexNotFound(f"{link} points at {target}, which holds no {MANIFEST}")
    return target


def remove_partials(index_dir: Path) -> int:
    """Remove what interrupted builds left: half-written generations and the new
    `current` link a build was about to rename over the old one; how many."""
    removed = 0
    if index_dir.is_dir():
        for path in index_dir.glob(f"gen-*{PARTIAL_SUFFIX}"):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        for link in index_dir.glob(f"{_TMP_LINK_PREFIX}*"):
            if link.is_symlink():
                link.unlink(missing_ok=True)
                removed += 1
    return removed


def new_partial_generation(index_dir: Path, now: dt.datetime | None = None) -> Path:
    # Microseconds: names sort in build order, which pruning relies on, even for
    # builds a second apart (builds into one directory never overlap: see build.py).
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    path = index_dir / f"gen-{stamp}-{secrets.token_hex(3)}{PARTIAL_SUFFIX}"
    (path / "shards").mkdir(parents=True)
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(partial: Path, keep: int = 3) -> Path:
    """Make `partial` the current generation atomically; prune old generations."""
    index_dir = partial.parent
    for path in [*partial.rglob("*"), partial]:
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            _fsync_dir(path)
    final = partial.with_name(partial.name.removesuffix(PARTIAL_SUFFIX))
    os.rename(partial, final)
    tmp_link = index_dir / f"{_TMP_LINK_PREFIX}{secrets.token_hex(4)}"
    try:
        os.symlink(final.name, tmp_link)
        os.replace(tmp_link, index_dir / CURRENT)
    except BaseException:
        # Never leave a complete generation that nothing points at, nor a stray link.
        tmp_link.unlink(missing_ok=True)
        shutil.rmtree(final, ignore_errors=True)
        raise
    _fsync_dir(index_dir)
    _prune(index_dir, final, keep)
    return final


def _prune(index_dir: Path, current: Path, keep: int) -> None:
    """Keep `current` and the `keep - 1` generations published just before it.

    The older ones stay for rollback (point `current` at one by hand).
    """
    others = sorted(
        p for p in index_dir.glob("gen-*")
        if p.is_dir() and not p.name.endswith(PARTIAL_SUFFIX) and p != current
    )
    for old in others[: max(0, len(others) - max(keep - 1, 0))]:
        shutil.rmtree(old, ignore_errors=True)
