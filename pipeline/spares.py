"""WarmSpares: session actors placed and connected to their node's Chromium ahead of need.

A new session that takes a spare only opens its page (~0.6 s instead of ~1.7 s cold).
The next spare is made `refill_delay_s` after a take (RRSTREAM_WARM_REFILL_DELAY_S, 4 s),
not at once: the taken spare's first page and the next spare's start (a session actor
placed, its Playwright driver, a context in the node's shared Chromium) at the same
moment stalled the node's other sessions for 100-130 ms (bench/README.md, the start
stall); apart, 40-90.
A spare holds a browser slot, so spares are only made while there is room: no session
waits for a slot, and the pool has one free beyond the live sessions and the spares.
How a spare is made and let go is the registry's (`make`, `release`); when to make one
and which to hand out is decided here, so unit tests drive it without Ray.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pipeline.errors import describe_error

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class Spare:
    """A placed, warmed session actor with its stream open, waiting for a session."""

    id: str
    actor: Any
    node_id: str
    stream: Any  # its StreamRef


class WarmSpares:
    def __init__(self, want: int, make: Callable[[], Awaitable[Spare]],
                 room: Callable[[], bool], release: Callable[[Spare], None],
                 refill_delay_s: float = 0.0) -> None:
        self._want = want
        self._refill_delay_s = refill_delay_s
        self._taken = False  # a spare was taken since the last fill began
        self._make = make
        self._room = room
        self._release = release
        self._ready: list[Spare] = []
        self._making = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        """Browser slots the spares hold: those ready and those being made."""
        return len(self._ready) + self._making

    @property
    def ready(self) -> list[Spare]:
        return list(self._ready)

    def take(self) -> Spare | None:
        """The oldest ready spare, or None; a replacement is made when there is room."""
        if not self._ready:
            return None
        self._taken = True
        return self._ready.pop(0)

    def refill(self) -> None:
        """Makes spares up to `want`, one at a time, while there is room."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._fill(), name="warm-spares")

    async def shed(self) -> None:
        """A session must wait for a slot: the spares give theirs up (one being made is
        cancelled, leaving nothing), and none is made while it waits."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        ready, self._ready = self._ready, []
        for spare in ready:
            self._release(spare)

    def forget_node(self, node_id: str) -> None:
        """The node is gone: its spares went with it."""
        self._ready = [s for s in self._ready if s.node_id != node_id]

    async def close(self) -> list[Spare]:
        """Stops making spares for good; returns the ready ones (the caller stops them)."""
        self._want = 0
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        ready, self._ready = self._ready, []
        return ready

    async def _fill(self) -> None:
        if self._taken and self._refill_delay_s:
            await asyncio.sleep(self._refill_delay_s)  # the taken one's page opens first
        self._taken = False
        while len(self._ready) < self._want and self._room():
            self._making += 1
            try:
                spare = await self._make()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("warming a browser failed: %s", describe_error(exc))
                return
            finally:
                self._making -= 1
            self._ready.append(spare)


__all__ = ["Spare", "WarmSpares"]
