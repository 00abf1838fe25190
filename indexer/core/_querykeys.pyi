import datetime as dt
from typing import Any

class MemoKeys:
    """The fast path of matchkeys.canonical_keys with a memo (C)."""

    def __init__(self, query_name: type[tuple[Any, ...]], /) -> None: ...
    def keys(
        self, fields: object, memo: object, today: dt.date | None, /
    ) -> tuple[str, ...] | None: ...
