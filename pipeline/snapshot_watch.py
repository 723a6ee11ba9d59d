"""SnapshotWatch: notices a page that is not being recorded, restarts its recorder, says so.

Viewers render nothing until an rrweb FullSnapshot arrives, so a page whose recorder did
not start (its script failed, the page broke MutationObserver, a `load` that never comes)
or whose snapshot takes very long is a silent blank for them. A while after each page
load (RRSTREAM_SNAPSHOT_TIMEOUT_S) the session asks the page's recorder how it is; without
a snapshot it starts rrweb again (or injects it, when it is not in the page at all), up
to twice, and reports the problem in the session's status until a snapshot is there. It
keeps looking at that pace until one is (a slow snapshot ends, a restart worked). A page
too busy to answer is not restarted: that would only queue another snapshot behind the
one it is taking. Nothing of this is on the per-batch path: one evaluate per page load
when all is well.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from pipeline.recorder import RecorderState

_log = logging.getLogger(__name__)
_ANSWER_TIMEOUT_S = 2.0
_RESTARTS = 2


class RecorderControl(Protocol):
    """The page's recorder (pipeline/recorder.py PageRecorder)."""

    async def state(self) -> RecorderState | None: ...

    async def restart(self) -> None: ...

    async def inject(self) -> None: ...


class SnapshotWatch:
    """`on_problem(reason)` is called with what is wrong when a look finds no snapshot, and
    with None when a later look finds one."""

    def __init__(self, timeout_s: float, on_problem: Callable[[str | None], None],
                 answer_timeout_s: float = _ANSWER_TIMEOUT_S, restarts: int = _RESTARTS) -> None:
        self._timeout_s = timeout_s
        self._answer_timeout_s = answer_timeout_s
        self._restarts = restarts
        self._on_problem = on_problem

    async def watch(self, recorder: RecorderControl, url: str) -> None:
        """Looks `timeout_s` after a load of `url`, and every `timeout_s` after that until
        the page has a snapshot; the caller cancels it when the page goes."""
        reported: str | None = None
        restarts = 0
        while True:
            await asyncio.sleep(self._timeout_s)
            problem, retry = await self._look(recorder, url)
            if problem is None:
                if reported is not None:
                    self._on_problem(None)
                return
            if retry is not None and restarts >= self._restarts:
                problem += f"; still so after {restarts} restarts of the recorder"
                retry = None
            if problem != reported:
                self._on_problem(problem)
                reported = problem
            if retry is None:
                continue
            restarts += 1
            try:
                await asyncio.wait_for(retry(), self._answer_timeout_s)
            except TimeoutError:
                _log.warning("restarting the recorder of %s got no answer within %.0f s",
                             url, self._answer_timeout_s)

    async def _look(self, recorder: RecorderControl, url: str,
                    ) -> tuple[str | None, Callable[[], Awaitable[None]] | None]:
        """What is wrong (None: nothing) and what to try about it."""
        missing = f"no rrweb snapshot {self._timeout_s:g} s after loading {url}"
        try:
            state = await asyncio.wait_for(recorder.state(), self._answer_timeout_s)
        except TimeoutError:
            # Busy in a script, or in a snapshot that takes long: nothing to retry yet.
            return f"{missing}: the page did not answer (its main thread is busy)", None
        if state is None:
            return f"{missing}: the recorder was not in the page", recorder.inject
        if state.failure is not None:
            return f"the recorder failed on {url}: {state.failure}", recorder.restart
        if state.snapshots:
            return None, None
        return f"{missing}: rrweb did not take one", recorder.restart


__all__ = ["RecorderControl", "SnapshotWatch"]
