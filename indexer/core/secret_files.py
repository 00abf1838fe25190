"""Locating and reading the files that hold secrets (the pepper, the OPRF key).

One place for what both secrets share: a flag or an environment variable names the
file, reading errors say which file, and a file that other users can read draws a
warning. Never put a secret's bytes in a message.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

__all__ = ["read_secret_file", "resolve_secret_file"]


def resolve_secret_file(
    flag: str | os.PathLike[str] | None, env: str, missing: str, error: type[Exception]
) -> Path:
    """The flag's path, else `$env`'s, else `error(missing)`."""
    chosen = flag if flag is not None else os.environ.get(env)
    if not chosen:
        raise error(missing)
    return Path(chosen)


def read_secret_file(path: Path, what: str, error: type[Exception]) -> bytes:
    """The file's bytes; `error` when unreadable, a warning when others may read it."""
    try:
        raw = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise error(f"cannot read the {what} {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Not fatal (a Kubernetes secret mount may be 0644 inside a private pod), but
        # an operator should know.
        warnings.warn(f"the {what} {path} is readable by other users: chmod 600 it",
                      stacklevel=3)
    return raw
