"""Keyed fingerprints of match keys, and the pepper they are keyed with.

Why keyed: a NIR has ~10^11 possible values and a date of birth adds ~5 bits, so an
unkeyed hash of a match key is reversed by brute force in minutes. A fingerprint is
BLAKE2b keyed with a secret pepper (>= 32 random bytes) that never lives in the
index: whoever steals the index without the pepper learns nothing.

Why 64 bits: the index holds ~1e8 fingerprints for 33 million people (one strong key
and one or two weak keys each). A query checks at most 2 keys, so the chance that an
absent person collides with some stored fingerprint is about 2 * 1e8 / 2^64 ~ 1e-11
per query; checking every French resident once (7e7 queries) gives a false match with
probability ~ 8e-4 in total. 64 bits also make the sorted shard arrays plain uint64,
which numpy searches without any Python per key.

Fingerprints are computed in C (`_fingerprints.c`, libsodium's BLAKE2b): one call
for a whole chunk of keys, each optionally with one character left out, which is how a
`similar` query's one-letter deletions are fingerprinted without making a string for
each. `Fingerprinter(pepper, native=False)` computes the same fingerprints with
hashlib: the reference the tests compare the C module with.

Never log a canonical key, a fingerprint of a single person, or the pepper.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from indexer.core._fingerprints import Hasher
from indexer.core.matchkeys import similar_probes
from indexer.core.secret_files import read_secret_file, resolve_secret_file

__all__ = [
    "PEPPER_ENV",
    "Fingerprinter",
    "PepperError",
    "load_pepper",
    "resolve_pepper_file",
]

PEPPER_ENV: Final = "EXPOSURE_PEPPER_FILE"
MIN_PEPPER_BYTES: Final = 32
FINGERPRINT_ALGORITHM: Final = "blake2b-64-keyed"
_PERSON: Final = b"exposure-fp-v1"
_NAMESPACES: Final = 4  # records.NAMESPACES
_HEX_PEPPER: Final = re.compile(rb"[0-9a-fA-F]{64,256}")

Fingerprints = npt.NDArray[np.uint64]


class PepperError(Exception):
    """No pepper, an unreadable one or a weak one. The message says what to do."""


def resolve_pepper_file(flag: str | os.PathLike[str] | None) -> Path:
    """`--pepper-file F`, else `$EXPOSURE_PEPPER_FILE`, else a PepperError."""
    return resolve_secret_file(
        flag, PEPPER_ENV,
        f"no pepper: pass --pepper-file FILE or set {PEPPER_ENV} "
        f"(create one with: head -c 32 /dev/urandom > pepper.key && chmod 600 pepper.key)",
        PepperError,
    )


def load_pepper(path: Path) -> bytes:
    """The pepper bytes: a raw file of >= 32 bytes, or >= 64 hex digits."""
    raw = read_secret_file(path, "pepper file", PepperError)
    stripped = raw.strip()
    pepper = bytes.fromhex(stripped.decode()) if _HEX_PEPPER.fullmatch(stripped) else raw
    if len(pepper) < MIN_PEPPER_BYTES:
        raise PepperError(
            f"the pepper file {path} holds {len(pepper)} bytes; it needs at least "
            f"{MIN_PEPPER_BYTES} random bytes (head -c 32 /dev/urandom > {path})"
        )
    return pepper


class Fingerprinter:
    """Turns canonical match keys into 64-bit keyed fingerprints."""

    def __init__(self, pepper: bytes, *, native: bool = True) -> None:
        if len(pepper) < MIN_PEPPER_BYTES:
            raise PepperError(f"the pepper must be at least {MIN_PEPPER_BYTES} bytes")
        # BLAKE2b takes keys of up to 64 bytes: a longer pepper is compressed first.
        key = pepper if len(pepper) <= 64 else hashlib.blake2b(pepper, digest_size=64).digest()
        self._base = hashlib.blake2b(key=key, digest_size=8, person=_PERSON)
        self._hasher = Hasher(key, _PERSON) if native else None
        # `digests` without drops, called straight (no Python frame) where it can be.
        self.digests_of: Callable[[Sequence[str]], bytes] = (
            self._hasher.many if self._hasher is not None else self.digests)
        # A one-way tag of the pepper, published in the manifest so that a service
        # started with another pepper refuses to answer rather than saying "not found"
        # to everyone. It reveals nothing: the pepper is 256 random bits.
        # The similar tier keeps each namespace's entries under the fingerprint XOR a
        # mask of its own (docs/matching.md): one fingerprint of a weak-form string then
        # serves the exact index and every namespace, and the masks, derived from the
        # pepper, keep a stolen index from linking a tier entry to an exact one.
        self.namespace_masks: tuple[int, ...] = tuple(
            int.from_bytes(hashlib.blake2b(
                b"similar-namespace-%d" % namespace, key=key, digest_size=8,
                person=b"exposure-simns").digest(), "little")
            for namespace in range(_NAMESPACES)
        )
        self.key_id = hashlib.blake2b(
            b"key-id", key=key, digest_size=16, person=b"exposure-keyid"
        ).hexdigest()

    def one(self, canonical: str) -> int:
        return int.from_bytes(self.digests((canonical,), None), "little")

    def many(self, canonicals: Sequence[str], drops: Sequence[int] | None = None
             ) -> Fingerprints:
        """Fingerprints of many keys as a little-endian uint64 array (no Python ints).

        `drops[i] >= 0` fingerprints `canonicals[i]` without its character at that
        index (`key[:d] + key[d + 1:]`): a one-letter deletion probe.
        """
        return np.frombuffer(self.digests(canonicals, drops), dtype="<u8").astype(
            np.uint64, copy=False)

    def similar_digests(self, keys: Sequence[str]) -> tuple[bytes, bytes]:
        """The fingerprints (`digests`) and the kinds (a byte each, `matchkeys.PROBE_*`)
        of a query's similar probes: `matchkeys.similar_probes` then `digests`, which
        the C module does in one call for canonical keys (no string made in Python)."""
        if self._hasher is not None:
            planned = self._hasher.similar(keys)
            if planned is not None:
                return planned
        probes, drops, kinds = similar_probes(keys)
        return self.digests(probes, drops), bytes(kinds)

    def digests(self, canonicals: Sequence[str], drops: Sequence[int] | None = None) -> bytes:
        """`many` as bytes (8 little-endian bytes a key), for the C lookups to read."""
        if self._hasher is not None:
            return self._hasher.many(canonicals, drops)
        # The reference: hashlib, copying the keyed state (which skips the key block that
        # a fresh `blake2b(key=...)` would compress each time).
        new_state = self._base.copy
        digests: list[bytes] = []
        if drops is not None:
            if len(drops) != len(canonicals):
                raise ValueError("drops must have one entry per key")
            if any(drop >= len(key) for key, drop in zip(canonicals, drops, strict=True)):
                raise IndexError("drop is past the end of its key")
            canonicals = [key if drop < 0 else key[:drop] + key[drop + 1:]
                          for key, drop in zip(canonicals, drops, strict=True)]
        for canonical in canonicals:
            state = new_state()
            state.update(canonical.encode())
            digests.append(state.digest())
        return b"".join(digests)
