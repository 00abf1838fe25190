"""The build's worker pool: a process pool, or this process when one worker is asked for.

Blocks of a dump are megabytes each, so the map keeps at most `window` tasks in flight
(memory stays flat whatever the input) and yields results in submission order. With one
worker the same code path runs inline, which is also what a profiler wants to see.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import ExitStack
from typing import Any, Final, TypeVar

__all__ = ["InlineExecutor", "bounded_map", "worker_pool"]

T = TypeVar("T")
_PR_SET_PDEATHSIG: Final = 1


class InlineExecutor:
    """`workers=1`: tasks run in this process, when `bounded_map` reaches them."""


def worker_pool(
    stack: ExitStack, workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...]
) -> Executor | InlineExecutor:
    """A pool of `workers` forked processes (closed with `stack`), each set up by
    `initializer(*initargs)` and killed by the kernel if the builder dies; with one
    worker, this process is set up instead."""
    if workers == 1:
        initializer(*initargs)
        return InlineExecutor()
    return stack.enter_context(ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork"),
        initializer=_start_worker, initargs=(os.getpid(), initializer, initargs),
    ))


def _start_worker(
    parent_pid: int, initializer: Callable[..., None], initargs: tuple[Any, ...]
) -> None:
    _die_with_parent(parent_pid)
    initializer(*initargs)


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this worker when the builder dies (Linux).

    A pool worker waits for tasks on a pipe whose write end every forked sibling also
    holds, so it never sees EOF: after a `kill -9` of the builder it would wait
    forever, an orphan holding memory (seen in practice, and tested). Where prctl does
    not exist, nothing changes.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the builder died before prctl took effect
        os._exit(1)


def bounded_map(
    executor: Executor | InlineExecutor, fn: Callable[..., T], tasks: Iterable[tuple[Any, ...]],
    window: int,
) -> Iterator[T]:
    """`fn(*task)` for each task, in order, with at most `window` tasks in flight."""
    if isinstance(executor, InlineExecutor):
        for task in tasks:
            yield fn(*task)
        return
    pending: deque[Future[T]] = deque()
    for task in tasks:
        pending.append(executor.submit(fn, *task))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
