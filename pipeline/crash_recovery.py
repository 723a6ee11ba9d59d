"""CrashRecovery: a session's page (or its whole browser) crashed; it is reopened where it
was and the running step runs again, unless that is one crash too many.

The budget is pipeline/crashes.py's sliding window. Crashes can come faster than the
page reopens (a browser crash is often seen by its page too, or the reopened page
crashes at once): they are each counted, and one reopen runs at a time, again for the
worst crash that came meanwhile. Plain Python over callables, so the deciding is
tested without a browser (tests/unit/test_crash_recovery.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pipeline.crashes import CrashBudget, CrashKind
from pipeline.errors import describe_error, unwrap
from pipeline.logs import Log
from pipeline.metrics import SessionMetrics
from pipeline.models import WarningKind
from pipeline.warning_log import WarningLog


class CrashRecovery:
    """`live()` says whether the session is running, paused or idle (only then is a crash
    recovered from); `interrupt(kind)` stops what ran on the lost page; `reopen(kind)`
    opens it again at its URL; `reopened()` is told once it is back (the session reports
    and runs its steps on); `fail(reason)` ends the session; `url()` is where the page
    was."""

    def __init__(self, session_id: str, budget: CrashBudget, warnings: WarningLog, log: Log,
                 metrics: SessionMetrics | None, *,
                 live: Callable[[], bool],
                 spawn: Callable[[Awaitable[Any], str], asyncio.Task[Any]],
                 interrupt: Callable[[CrashKind], None],
                 reopen: Callable[[CrashKind], Awaitable[None]],
                 reopened: Callable[[], None],
                 fail: Callable[[str], None],
                 url: Callable[[], str | None]) -> None:
        self.session_id = session_id
        self.budget = budget
        self.restarts = 0
        self._warnings = warnings
        self._log = log
        self._metrics = metrics
        self._live = live
        self._spawn = spawn
        self._interrupt = interrupt
        self._reopen = reopen
        self._reopened = reopened
        self._fail = fail
        self._url = url
        self._pending: CrashKind | None = None
        self._recovering: asyncio.Task[None] | None = None

    @property
    def recovering(self) -> bool:
        """The page is being reopened (it runs the workflow on once it is)."""
        return self._recovering is not None and not self._recovering.done()

    def crashed(self, kind: CrashKind) -> None:
        """The page (or its whole browser) is gone: reopen it where it was, unless that is
        one crash too many."""
        if not self._live():
            return
        give_up = self.budget.crashed(kind)
        if self._metrics is not None:
            self._metrics.restarted(kind.value)
        what = "the browser crashed" if kind is CrashKind.BROWSER else "the page crashed"
        self._warnings.add(WarningKind.BROWSER_CRASH if kind is CrashKind.BROWSER
                           else WarningKind.PAGE_CRASH, what, self._url())
        if give_up is not None:
            self._fail(give_up)
            return
        self.restarts += 1
        self._log.warning("session %s: %s; reopening %s (restart %d)", self.session_id, what,
                          self._url(), self.restarts)
        # The running step is cancelled and runs again once the page is back.
        self._interrupt(kind)
        if self._pending is not CrashKind.BROWSER:
            self._pending = kind
        if not self.recovering:
            self._recovering = self._spawn(self._recover(), "recover")

    async def _recover(self) -> None:
        while self._pending is not None:
            kind, self._pending = self._pending, None
            try:
                await self._reopen(kind)
            except Exception as exc:
                if self._pending is not None:
                    continue  # it crashed again meanwhile: counted, and reopened next turn
                self._fail(f"could not reopen the page after a {kind} crash: "
                           f"{describe_error(unwrap(exc))}")
                return
        self._log.info("session %s: page reopened at %s", self.session_id, self._url())
        self._reopened()


__all__ = ["CrashRecovery"]
