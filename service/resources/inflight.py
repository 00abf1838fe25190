"""The requests a worker is handling, so that a shutdown can let them finish.

aiohttp's own graceful shutdown stops reading from every connection as soon as it
starts: a bulk upload still streaming in would hang until it is cancelled. So the CLI
first stops accepting connections, then waits here until the requests in flight are
done (bounded), and only then hands over to aiohttp's shutdown.
"""

from __future__ import annotations

import asyncio

__all__ = ["InFlight"]


class InFlight:
    def __init__(self) -> None:
        self.count = 0
        self.draining = False
        # Made by `drain` only: the two calls per request are then an addition each.
        self._idle: asyncio.Event | None = None

    def started(self) -> None:
        self.count += 1

    def finished(self) -> None:
        self.count -= 1
        if self.count == 0 and self._idle is not None:
            self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Wait until no request is in flight; False if some still are after `timeout`."""
        self.draining = True
        if self.count == 0:
            return True
        self._idle = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True
