"""The OPRF secret key of private lookups: where it comes from, how it is read and made.

The key is its own secret, never inside the index (docs/design.md §7). Never log it,
print it or put it into an exception.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

from indexer.core.secret_files import read_secret_file, resolve_secret_file
from indexer.private import oprf

OPRF_KEY_ENV: Final = "EXPOSURE_OPRF_KEY_FILE"
_HEX_KEY: Final = re.compile(rb"[0-9a-fA-F]{64}")


class OprfKeyError(ValueError):
    """No OPRF key, an unreadable one or not a valid scalar. The message says what to do.

    A ValueError so that both CLIs report it as a usage error (exit 2).
    """



# ------------------------------------------------------------------------- OPRF key

_NEW_KEY_HINT: Final = (
    "create one with: python -c \"from indexer.private import write_oprf_key; "
    "write_oprf_key('oprf.key')\""
)


def resolve_oprf_key_file(flag: str | os.PathLike[str] | None) -> Path:
    """`--oprf-key-file F`, else `$EXPOSURE_OPRF_KEY_FILE`, else an OprfKeyError."""
    return resolve_secret_file(
        flag, OPRF_KEY_ENV,
        f"no OPRF key: pass --oprf-key-file FILE or set {OPRF_KEY_ENV} ({_NEW_KEY_HINT})",
        OprfKeyError,
    )


def load_oprf_key(path: Path) -> bytes:
    """The OPRF secret key: 32 raw bytes or 64 hex digits, a canonical non-zero scalar."""
    raw = read_secret_file(path, "OPRF key file", OprfKeyError)
    stripped = raw.strip()
    if _HEX_KEY.fullmatch(stripped):
        key = bytes.fromhex(stripped.decode("ascii"))
    elif len(raw) == oprf.SCALAR_BYTES:
        key = raw
    else:
        raise OprfKeyError(
            f"the OPRF key file {path} holds {len(raw)} bytes; it needs 32 raw bytes or "
            f"64 hex digits ({_NEW_KEY_HINT})"
        )
    try:
        key = oprf.load_private_key(key)
    except oprf.OprfError:
        # from None: the OprfError says nothing more, and the key must not be chained.
        raise OprfKeyError(
            f"the OPRF key file {path} is not a ristretto255 scalar (32 bytes little-endian, "
            f"below the group order, not zero): random bytes are not; {_NEW_KEY_HINT}"
        ) from None
    return key


def write_oprf_key(path: str | os.PathLike[str]) -> str:
    """Write a fresh OPRF key as 64 hex digits to a new file (mode 0600); its key id."""
    key = oprf.generate_private_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as stream:
        stream.write(key.hex() + "\n")
    return oprf.key_id(key)


