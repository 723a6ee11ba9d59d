"""A session's lost stream, with fake sinks (no browser, no Ray): failed without a
supervisor, waited for with one, and failed when it is not reopened in time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from types import SimpleNamespace
from typing import Any

from pipeline.models import WarningKind
from pipeline.stream_link import StreamLink
from pipeline.warning_log import WarningLog
from tests.unit.test_outbox import Sink, batch


class Session:
    """The callables a BrowserSession hands its stream link; no page is open."""

    def __init__(self, sink: Sink, supervised: bool, reattach_timeout_s: float = 30.0) -> None:
        self.failures: list[str] = []
        self.lost: list[str] = []
        self.late: list[str] = []
        self.streaming = True
        self.tasks: set[asyncio.Task[Any]] = set()
        self.warnings = WarningLog()
        no_page = SimpleNamespace(recorder=None, page=None)
        self.link = StreamLink(
            "s", sink, reattach_timeout_s, no_page,  # type: ignore[arg-type]
            self.warnings, logging.getLogger("test"),
            report_lost=(lambda: self.lost.append("s")) if supervised else None,
            streaming=lambda: self.streaming, fail=self.failures.append,
            lost_late=self.late.append, spawn=self.spawn,
            on_receiver=lambda receiver: None, on_sent=lambda batches: None, prepare=None)

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        return task

    async def push_one(self) -> None:
        self.link.outbox.start()
        self.link.outbox.receiver(batch("[1]", checkout=True))
        for _ in range(20):
            await asyncio.sleep(0)


async def test_without_a_supervisor_a_lost_stream_fails_the_session() -> None:
    session = Session(Sink(fail=True), supervised=False)
    await session.push_one()
    assert session.failures == ["stream lost: connection or I/O error: the streamer actor died"]
    assert session.link.lost_at is None
    await session.link.drain(time.monotonic() + 1)


async def test_with_a_supervisor_the_session_waits_and_a_reopened_stream_goes_on() -> None:
    session = Session(Sink(fail=True), supervised=True)
    await session.push_one()
    assert session.failures == [] and session.lost == ["s"]
    assert session.link.lost_at is not None and session.link.asset_sink() is None
    new = Sink()
    session.link.reopened(new, started=True)
    assert session.link.lost_at is None
    assert [w.message for w in session.warnings.list() if w.kind is WarningKind.STREAM_LOST][-1] \
        == "the stream was reopened"
    session.link.outbox.receiver(batch("[2]"))  # before the next checkout: not sent
    session.link.outbox.receiver(batch("[3]", checkout=True))
    await asyncio.gather(*session.tasks, return_exceptions=True)  # the wait was cancelled
    assert await session.link.outbox.drain(1.0)
    assert new.texts == ["[3]"]


async def test_a_stream_not_reopened_in_time_fails_the_session() -> None:
    session = Session(Sink(fail=True), supervised=True, reattach_timeout_s=0.05)
    await session.push_one()
    await asyncio.gather(*session.tasks)
    assert session.failures == ["its stream was lost and not reopened within 0.05 s"]


async def test_a_stream_lost_while_stopping_is_only_said() -> None:
    session = Session(Sink(fail=True), supervised=True)
    session.streaming = False
    await session.push_one()
    assert session.failures == [] and session.lost == []
    assert session.late == ["stream lost: connection or I/O error: the streamer actor died"]
