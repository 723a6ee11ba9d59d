"""What the session's outbox handed on, measured (no browser): canvas bytes, very large
batches, and the event limits carried to the recorder only while the session is live."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from pipeline.batch_meter import LARGE_BATCH_CHARS, BatchMeter
from pipeline.canvas_meter import CanvasMeter
from pipeline.models import WarningKind
from pipeline.page_limits import PageLimits
from pipeline.protocol import PageBatch
from pipeline.recorder import StillOver
from pipeline.warning_log import WarningLog
from tests.unit.test_event_rate import Clock
from tests.unit.test_page_limits import FakeRecorder


class Meter:
    def __init__(self, max_events_per_s: int = 1_000) -> None:
        self.clock = Clock()
        self.warnings = WarningLog()
        self.limits = PageLimits(max_events_per_s, 2, self.warnings, self.clock)
        self.canvas = CanvasMeter()
        self.recorder: FakeRecorder | None = FakeRecorder()
        self.live = True
        self.tasks: list[asyncio.Task[Any]] = []
        self.meter = BatchMeter(self.limits, self.canvas, self.warnings,
                                recorder=lambda: self.recorder,
                                url=lambda: "http://127.0.0.1/big", live=lambda: self.live,
                                spawn=self.spawn)

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task

    def batch(self, events: int, text: str = "[]", checkout: bool = False,
              canvas_chars: int = 0) -> PageBatch:
        ts = self.clock.now * 1000.0
        return PageBatch(checkout, events, ts, ts, text, canvas_chars=canvas_chars)


async def test_a_flood_makes_the_recorder_record_coarser_while_the_session_is_live() -> None:
    m = Meter()
    for _ in range(30):
        m.clock.now += 0.1
        m.meter.handed_on([m.batch(250), m.batch(250)])  # 5,000 events/s
    await asyncio.gather(*m.tasks)
    assert m.recorder is not None and m.recorder.calls[0] == ("degrade", 1)
    assert any(w.kind is WarningKind.EVENT_RATE for w in m.warnings.list())


async def test_no_recorder_is_told_while_the_session_is_not_live() -> None:
    m = Meter()
    m.live = False
    for _ in range(30):
        m.clock.now += 0.1
        m.meter.handed_on([m.batch(500)])
    m.meter.still_over(StillOver(per_s=9_000.0, bytes_per_s=0.0, page_time=m.clock.now))
    assert m.tasks == []
    assert m.recorder is not None and m.recorder.calls == []


async def test_canvas_bytes_are_counted_and_a_very_large_batch_is_one_warning() -> None:
    m = Meter(max_events_per_s=100_000)
    big = "x" * LARGE_BATCH_CHARS
    m.meter.handed_on([m.batch(1, canvas_chars=300), m.batch(1, big, checkout=True)])
    m.meter.handed_on([m.batch(1, big)])
    assert m.canvas.total == 300
    large = [w for w in m.warnings.list() if w.kind is WarningKind.LARGE_BATCH]
    assert len(large) == 1 and large[0].count == 2
    assert large[0].url == "http://127.0.0.1/big"
    assert "MB batch of changes at once" in large[0].message  # the newest says what it was
