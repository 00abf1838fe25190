from collections.abc import Sequence

class Hasher:
    """Keyed BLAKE2b with an 8-byte digest (libsodium)."""

    def __init__(self, key: bytes, person: bytes) -> None: ...
    def many(self, keys: Sequence[str], drops: Sequence[int] | None = None) -> bytes: ...
