"""Crash recovery's decisions, with a fake session (no browser): what is reopened, how
often, and when the session gives up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from pipeline.crash_recovery import CrashRecovery
from pipeline.crashes import CrashBudget, CrashKind
from pipeline.models import WarningKind
from pipeline.warning_log import WarningLog


class FakeSession:
    """The callables a BrowserSession hands its crash recovery, recording each call."""

    def __init__(self, limit: int = 3) -> None:
        self.live = True
        self.calls: list[tuple[str, object]] = []
        self.failures: list[str] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.reopen_gate: asyncio.Event | None = None  # set: a reopen waits for it
        self.reopen_error: Exception | None = None
        self.warnings = WarningLog()
        self.recovery = CrashRecovery(
            "s", CrashBudget(limit, 60.0), self.warnings, logging.getLogger("test"), None,
            live=lambda: self.live, spawn=self.spawn,
            interrupt=lambda kind: self.calls.append(("interrupt", kind)),
            reopen=self.reopen, reopened=lambda: self.calls.append(("reopened", None)),
            fail=self.failures.append, url=lambda: "http://127.0.0.1/a")

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        return task

    async def reopen(self, kind: CrashKind) -> None:
        self.calls.append(("reopen", kind))
        if self.reopen_gate is not None:
            await self.reopen_gate.wait()
        if self.reopen_error is not None:
            error, self.reopen_error = self.reopen_error, None
            raise error

    async def settled(self) -> None:
        await asyncio.gather(*self.tasks)


async def test_a_page_crash_reopens_the_page_and_runs_the_steps_on() -> None:
    session = FakeSession()
    session.recovery.crashed(CrashKind.PAGE)
    assert session.recovery.recovering
    await session.settled()
    assert session.calls == [("interrupt", CrashKind.PAGE), ("reopen", CrashKind.PAGE),
                             ("reopened", None)]
    assert not session.recovery.recovering and session.recovery.restarts == 1
    assert [(w.kind, w.url) for w in session.warnings.list()] == [
        (WarningKind.PAGE_CRASH, "http://127.0.0.1/a")]
    assert session.failures == []


async def test_a_crash_of_a_session_that_is_not_live_is_not_counted() -> None:
    session = FakeSession()
    session.live = False
    session.recovery.crashed(CrashKind.BROWSER)
    assert session.calls == [] and session.recovery.restarts == 0
    assert session.recovery.budget.counts[CrashKind.BROWSER] == 0


async def test_one_crash_too_many_fails_the_session_instead_of_reopening() -> None:
    session = FakeSession(limit=1)
    session.recovery.crashed(CrashKind.PAGE)
    await session.settled()
    session.calls.clear()
    session.recovery.crashed(CrashKind.PAGE)
    await session.settled()
    assert session.calls == []
    assert session.failures == ["the page crashed 2 times within 60 s"]
    assert session.recovery.budget.counts[CrashKind.PAGE] == 2


async def test_crashes_during_a_reopen_are_each_counted_and_reopened_once_for_the_worst() -> None:
    session = FakeSession()
    session.reopen_gate = asyncio.Event()
    session.recovery.crashed(CrashKind.PAGE)
    await asyncio.sleep(0)  # the page's reopen is under way
    session.recovery.crashed(CrashKind.BROWSER)
    session.recovery.crashed(CrashKind.PAGE)  # does not make the browser's a page's
    session.reopen_gate.set()
    await session.settled()
    assert [c for c in session.calls if c[0] == "reopen"] == [
        ("reopen", CrashKind.PAGE), ("reopen", CrashKind.BROWSER)]
    assert session.calls[-1] == ("reopened", None)
    assert session.recovery.restarts == 3 and session.failures == []


async def test_a_reopen_that_fails_fails_the_session_unless_it_crashed_again_meanwhile() -> None:
    session = FakeSession()
    session.reopen_error = RuntimeError("no context")
    session.recovery.crashed(CrashKind.BROWSER)
    await session.settled()
    assert session.failures == ["could not reopen the page after a browser crash: "
                                "no context"]
    assert ("reopened", None) not in session.calls

    again = FakeSession()
    again.reopen_gate, again.reopen_error = asyncio.Event(), RuntimeError("target closed")
    again.recovery.crashed(CrashKind.PAGE)
    await asyncio.sleep(0)
    again.recovery.crashed(CrashKind.PAGE)  # the reopened page crashed at once
    again.reopen_gate.set()
    await again.settled()
    assert again.failures == []
    assert [c for c in again.calls if c[0] in ("reopen", "reopened")] == [
        ("reopen", CrashKind.PAGE), ("reopen", CrashKind.PAGE), ("reopened", None)]
