"""BusyWatch: notices a page whose main thread stopped answering, and says so.

A script that never yields (an infinite loop, an alert loop once the page guard makes
`alert` return at once) or a task of many seconds (rrweb's snapshot of a huge DOM) keeps
a renderer on a CPU core and the page's stream silent, and nothing else in the session
sees it. Every `interval_s` the session asks the page something trivial; no answer
within `answer_s` is reported with how long it has lasted, and an answer after that is
reported too. One evaluate per interval per page; a stop still ends such a page within
5 s (its renderer is crashed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

_INTERVAL_S = 5.0
_ANSWER_S = 2.0


class BusyWatch:
    """`on_change(since)` is called with the time the page stopped answering (a
    `clock()` value) when a look finds it so, and with None when it answers again."""

    def __init__(self, on_change: Callable[[float | None], None],
                 interval_s: float = _INTERVAL_S, answer_s: float = _ANSWER_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._on_change = on_change
        self._interval_s = interval_s
        self._answer_s = answer_s
        self._clock = clock

    async def watch(self, ping: Callable[[], Awaitable[object]]) -> None:
        """Looks until cancelled (the page went away or the session stops)."""
        busy_since: float | None = None
        while True:
            await asyncio.sleep(self._interval_s)
            asked = self._clock()
            try:
                await asyncio.wait_for(ping(), self._answer_s)
            except TimeoutError:
                if busy_since is None:
                    busy_since = asked
                    self._on_change(busy_since)
                continue
            if busy_since is not None:
                busy_since = None
                self._on_change(None)


__all__ = ["BusyWatch"]
