"""libsodium's ristretto255 group, loaded in place from the system's libsodium (ctypes).

The seven operations the OPRF needs (indexer/private/oprf.py), each a direct call into
libsodium, which is constant-time where secrets are used. The library is the one the
system installed (Debian's `libsodium23`), mapped from where it lies: nothing is
unpacked into `$TMPDIR`, so a container whose /tmp is a `noexec` tmpfs starts (rbcl,
used before, copied its own libsodium into /tmp at every import and loaded it from
there). PyNaCl bundles a libsodium but declares no ristretto255 function; pysodium
binds them the same way (ctypes) but is a 2,000-line dependency for seven calls and
finds the library by running `ldconfig` at import.

Arguments are checked for length here, before they reach C; meaning (canonical scalars,
the identity) is the caller's business. Never logs or echoes an argument.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Final

__all__ = [
    "BYTES",
    "HASH_BYTES",
    "NONREDUCED_SCALAR_BYTES",
    "SCALAR_BYTES",
    "SodiumUnavailable",
    "from_hash",
    "is_valid_point",
    "scalar_invert",
    "scalar_random",
    "scalar_reduce",
    "scalarmult",
    "scalarmult_base",
]

BYTES: Final = 32  # an encoded group element
HASH_BYTES: Final = 64  # input of from_hash
SCALAR_BYTES: Final = 32
NONREDUCED_SCALAR_BYTES: Final = 64  # input of scalar_reduce

# Debian 12 and 13 ship libsodium.so.23 (libsodium 1.0.18 and later: ristretto255 since
# 1.0.18). The soname first: the dynamic loader finds it without running anything.
_SONAMES: Final = ("libsodium.so.23", "libsodium.so.26", "libsodium.dylib")
_INSTALL_HINT: Final = (
    "libsodium (1.0.18 or later) is needed for private lookups: install the system "
    "package (Debian: apt-get install libsodium23)"
)


class SodiumUnavailable(ImportError):
    """The system's libsodium is missing, or too old for ristretto255."""


def _open() -> tuple[str, ctypes.CDLL]:
    for name in _SONAMES:
        try:
            return name, ctypes.CDLL(name)
        except OSError:
            continue
    # Elsewhere (another soname, a library outside the loader's paths): ask ldconfig.
    found = ctypes.util.find_library("sodium")
    if found:
        try:
            return found, ctypes.CDLL(found)
        except OSError:
            pass
    raise SodiumUnavailable(_INSTALL_HINT)


def _load() -> ctypes.CDLL:
    name, library = _open()
    if not hasattr(library, "crypto_core_ristretto255_from_hash"):
        raise SodiumUnavailable(f"{name} has no ristretto255: {_INSTALL_HINT}")
    # sodium_init picks the fastest implementations and seeds the generator:
    # 0 done now, 1 done before, -1 failure.
    if library.sodium_init() < 0:
        raise SodiumUnavailable("libsodium failed to initialise (sodium_init)")
    return library


_lib: Final = _load()
_UCHAR_P = ctypes.c_char_p
for _name, _arguments in {
    "crypto_core_ristretto255_from_hash": (_UCHAR_P, _UCHAR_P),
    "crypto_core_ristretto255_is_valid_point": (_UCHAR_P,),
    "crypto_core_ristretto255_scalar_reduce": (_UCHAR_P, _UCHAR_P),
    "crypto_core_ristretto255_scalar_random": (_UCHAR_P,),
    "crypto_core_ristretto255_scalar_invert": (_UCHAR_P, _UCHAR_P),
    "crypto_scalarmult_ristretto255": (_UCHAR_P, _UCHAR_P, _UCHAR_P),
    "crypto_scalarmult_ristretto255_base": (_UCHAR_P, _UCHAR_P),
}.items():
    _function = getattr(_lib, _name)
    _function.argtypes = _arguments
    _function.restype = ctypes.c_int


def _exact(value: bytes, length: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != length:
        raise ValueError(f"{what} must be {length} bytes")
    return value


def from_hash(h: bytes) -> bytes:
    """RFC 9496 one-way map of 64 uniform bytes to a group element."""
    out = ctypes.create_string_buffer(BYTES)
    if _lib.crypto_core_ristretto255_from_hash(out, _exact(h, HASH_BYTES, "hash")) != 0:
        raise ValueError("from_hash failed")
    return out.raw


def is_valid_point(p: bytes) -> bool:
    """The canonical encoding of a group element (libsodium accepts the identity too)."""
    valid: int = _lib.crypto_core_ristretto255_is_valid_point(_exact(p, BYTES, "point"))
    return valid == 1


def scalar_reduce(s: bytes) -> bytes:
    """64 bytes read little-endian, reduced modulo the group order."""
    out = ctypes.create_string_buffer(SCALAR_BYTES)
    _lib.crypto_core_ristretto255_scalar_reduce(out, _exact(s, NONREDUCED_SCALAR_BYTES,
                                                            "scalar"))
    return out.raw


def scalar_random() -> bytes:
    """A uniformly random scalar in [1, order)."""
    out = ctypes.create_string_buffer(SCALAR_BYTES)
    _lib.crypto_core_ristretto255_scalar_random(out)
    return out.raw


def scalar_invert(s: bytes) -> bytes:
    """1/s modulo the group order; ValueError for zero."""
    out = ctypes.create_string_buffer(SCALAR_BYTES)
    if _lib.crypto_core_ristretto255_scalar_invert(out, _exact(s, SCALAR_BYTES, "scalar")) != 0:
        raise ValueError("zero has no inverse")
    return out.raw


def scalarmult(n: bytes, p: bytes) -> bytes:
    """n * p; ValueError when p is invalid or the product is the identity."""
    out = ctypes.create_string_buffer(BYTES)
    if _lib.crypto_scalarmult_ristretto255(out, _exact(n, SCALAR_BYTES, "scalar"),
                                           _exact(p, BYTES, "point")) != 0:
        raise ValueError("invalid point, or the product is the identity")
    return out.raw


def scalarmult_base(n: bytes) -> bytes:
    """n * G; ValueError when the product is the identity (n = 0 mod the order)."""
    out = ctypes.create_string_buffer(BYTES)
    if _lib.crypto_scalarmult_ristretto255_base(out, _exact(n, SCALAR_BYTES, "scalar")) != 0:
        raise ValueError("the product is the identity")
    return out.raw
