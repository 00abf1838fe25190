"""Resuming an interrupted run: what it was run on, and which notices are done.

`DIR/.notify-state.json` holds digests of the inputs and options (never their
content) and the run's key (for stable Message-IDs) and date; `DIR/.notify-journal`
gets one line per finished output ("e FILE" for an e-mail, "b N" for letter batch
N), appended once the file is renamed into place. Outputs have names that depend
only on the inputs (an e-mail per ref, batch N = the N-th group of letters in file
order), so a notice whose journal line was lost is rewritten under the same name:
a resumed run never duplicates a notice.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from client.notify.outputs import write_private

__all__ = ["Journal", "JournalMismatch", "digest_file"]

STATE_NAME = ".notify-state.json"
JOURNAL_NAME = ".notify-journal"


class JournalMismatch(Exception):
    """DIR holds a run made on other inputs or options."""


def digest_file(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Journal:
    directory: Path
    fingerprint: dict[str, Any]
    run_key: bytes = b""
    started: float = 0.0
    emails: set[str] = field(default_factory=set)
    batches: set[int] = field(default_factory=set)
    resumed: bool = False
    _stream: IO[str] | None = None

    def open(self, restart: bool) -> None:
        state_path = self.directory / STATE_NAME
        journal_path = self.directory / JOURNAL_NAME
        state: dict[str, Any] | None = None
        if state_path.exists() and not restart:
            try:
                state = json.loads(state_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                state = None
            if state is not None and state.get("fingerprint") != self.fingerprint:
                raise JournalMismatch(
                    f"{self.directory} holds notices made from other files or options; "
                    "pass --restart to make them again from these inputs, or choose "
                    "another --out")
        if state is None:
            self.run_key = secrets.token_bytes(16)
            self.started = time.time()
            journal_path.unlink(missing_ok=True)
            write_private(state_path, json.dumps({
                "fingerprint": self.fingerprint, "run_key": self.run_key.hex(),
                "started": self.started}, indent=1).encode())
        else:
            self.run_key = bytes.fromhex(state["run_key"])
            self.started = float(state["started"])
            if journal_path.exists():
                for line in journal_path.read_text(encoding="utf-8").splitlines():
                    kind, _, name = line.partition(" ")
                    if kind == "e" and name:
                        self.emails.add(name)
                    elif kind == "b" and name.isdigit():
                        self.batches.add(int(name))
            self.resumed = bool(self.emails or self.batches)
        fd = os.open(journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._stream = os.fdopen(fd, "a", encoding="utf-8")

    def email_done(self, name: str) -> None:
        # Buffered: a line lost in a crash only means that e-mail is written again,
        # under the same name, by the resumed run.
        assert self._stream is not None
        self._stream.write(f"e {name}\n")

    def batch_done(self, number: int) -> None:
        assert self._stream is not None
        self._stream.write(f"b {number}\n")
        self._stream.flush()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
