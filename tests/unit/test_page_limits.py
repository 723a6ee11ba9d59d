"""What a page did that the session bounds, in its warnings and counters (no browser)."""

from __future__ import annotations

import asyncio

from pipeline.event_rate import PAUSE_S, RateAction, RateDecision
from pipeline.models import WarningKind
from pipeline.page_guard import Disturbance, Notice, parse_notices
from pipeline.page_limits import PageLimits
from pipeline.warning_log import WarningLog
from tests.unit.test_event_rate import Clock


class FakeRecorder:
    def __init__(self, hang: bool = False) -> None:
        self.calls: list[tuple[str, float]] = []
        self.hang = hang

    async def degrade(self, level: int) -> None:
        self.calls.append(("degrade", level))
        if self.hang:
            await asyncio.sleep(60)

    async def pause(self, seconds: float) -> None:
        self.calls.append(("pause", seconds))


def test_a_dialog_loop_is_one_warning_that_counts() -> None:
    warnings = WarningLog()
    limits = PageLimits(50_000, 3, warnings)
    limits.notice(Notice(Disturbance.DIALOG, 1, 'alert("hi")', "http://127.0.0.1/a"))
    for _ in range(10_000):
        limits.notice(Notice(Disturbance.DIALOG, 7, 'confirm("sure?")', "http://127.0.0.1/a"))
    limits.notice(Notice(Disturbance.POPUP, 3, 'window.open("/x")', "http://127.0.0.1/a"))
    listed = warnings.list()
    assert [(w.kind, w.count) for w in listed] == [(WarningKind.DIALOG, 70_001),
                                                   (WarningKind.POPUP, 3)]
    assert listed[0].message == ('the page opened 70,001 dialogs, each dismissed at once; '
                                 'the last: confirm("sure?")')
    assert "tried to open 3 windows" in listed[1].message
    assert (limits.dialogs, limits.popups) == (70_001, 3)


async def test_a_page_over_the_limit_is_told_to_record_coarser_then_to_pause() -> None:
    clock = Clock()
    warnings = WarningLog()
    limits = PageLimits(1_000, 2, warnings, clock)
    recorder = FakeRecorder()
    decisions = []
    for _ in range(60):
        clock.now += 0.1
        decision = limits.counted(500)  # 5,000/s
        if decision is not None:
            decisions.append(decision)
            await limits.apply(decision, recorder)
    # Pauses in a row grow.
    assert recorder.calls == [("degrade", 1), ("pause", PAUSE_S), ("pause", 2 * PAUSE_S)]
    assert limits.sampling_level == 1 and limits.stretches_dropped == 2
    messages = {w.message.split(":")[0]: w for w in warnings.list()}
    assert all(w.kind is WarningKind.EVENT_RATE for w in messages.values())
    assert any("over the limit of 1,000 (RRSTREAM_MAX_EVENTS_PER_S)" in m for m in messages)
    pauses = [w for w in warnings.list() if "paused" in w.message]
    assert len(pauses) == 1 and pauses[0].count == 2


async def flood(limits: PageLimits, clock: Clock, recorder: FakeRecorder) -> None:
    """A second and a bit of 60 events/s, 12 MB/s, each decision carried out."""
    for _ in range(11):
        clock.now += 0.1
        decision = limits.counted(6, 1_200_000)
        if decision is not None:
            await limits.apply(decision, recorder)


async def test_a_page_over_the_byte_budget_is_paused_and_says_so_in_mb() -> None:
    clock = Clock()
    warnings = WarningLog()
    limits = PageLimits(50_000, 3, warnings, clock, max_event_bytes_per_s=4_000_000)
    recorder = FakeRecorder()
    await flood(limits, clock, recorder)
    assert recorder.calls == [("pause", PAUSE_S)]
    assert limits.sampling_level == 0 and limits.stretches_dropped == 1
    [warning] = warnings.list()
    assert warning.kind is WarningKind.EVENT_RATE
    assert warning.message.startswith(
        "the page's events came to 12.0 MB/s, over the budget of 4.0 MB/s "
        "(RRSTREAM_MAX_EVENT_BYTES_PER_S): recording paused for 1 s and resumed with a new "
        "checkout (1 such stretches left out so far)")


async def test_the_rate_is_the_pages_even_when_its_batches_arrive_late() -> None:
    """A node too busy to carry a flood as fast as the page makes it hands the batches on
    late and spread out; the page's own timestamps say how fast it made them."""
    clock = Clock()
    page_started = clock.now
    limits = PageLimits(50_000, 3, WarningLog(), clock, max_event_bytes_per_s=4_000_000)
    decisions = []
    for i in range(1, 11):
        clock.now += 1.0  # one push a second gets through
        made_at = page_started + i * 0.1  # what the page made in 0.1 s: 12 MB/s
        decisions.append(limits.counted(6, 1_200_000, made_at))
    paused = [d for d in decisions if d is not None]
    assert paused and paused[0].action is RateAction.PAUSE
    assert paused[0].bytes_per_s > 4_000_000
    assert decisions.index(paused[0]) <= 4  # within the page's first second's bytes
    # Judged by wall time, the same pushes would be 1.2 MB/s: under the budget.
    late = PageLimits(50_000, 3, WarningLog(), clock, max_event_bytes_per_s=4_000_000)
    for _ in range(10):
        clock.now += 1.0
        assert late.counted(6, 1_200_000) is None


async def test_a_page_too_busy_to_take_the_change_does_not_hold_the_session() -> None:
    limits = PageLimits(1_000, 2, WarningLog())
    recorder = FakeRecorder(hang=True)
    decision = RateDecision(RateAction.COARSER, 1, 5_000.0)
    await asyncio.wait_for(limits.apply(decision, recorder), 5)
    assert recorder.calls == [("degrade", 1)]


def test_a_report_from_the_page_is_checked_and_bounded() -> None:
    good = ('{"url": "http://127.0.0.1/a", "counts": {"dialog": 5, "popup": 0}, '
            '"last": {"dialog": "alert(\\"x\\")", "popup": null}}')
    assert parse_notices(good) == [Notice(Disturbance.DIALOG, 5, 'alert("x")',
                                          "http://127.0.0.1/a")]
    # The page can call the binding itself: nonsense is ignored, huge values are bounded.
    assert parse_notices("not json") == []
    assert parse_notices("[1, 2]") == []
    assert parse_notices('{"counts": {"dialog": true}, "last": {}}') == []
    huge = parse_notices('{"counts": {"popup": 1e30}, "last": {"popup": 5}}')
    assert huge == []
    big = parse_notices('{"counts": {"popup": 99999999999999}, "last": {"popup": "' +
                        "x" * 10_000 + '"}, "url": 7}')
    assert big[0].count == 1_000_000_000 and len(big[0].what) == 300 and big[0].url is None


async def test_a_page_still_over_as_its_pause_ends_is_paused_again_and_says_so() -> None:
    clock = Clock()
    warnings = WarningLog()
    limits = PageLimits(50_000, 3, warnings, clock, max_event_bytes_per_s=4_000_000)
    recorder = FakeRecorder()
    await flood(limits, clock, recorder)
    clock.now += 1.0
    await limits.apply(limits.still_over(60, 9_500_000, clock.now), recorder)
    assert recorder.calls == [("pause", PAUSE_S), ("pause", 2 * PAUSE_S)]
    assert limits.stretches_dropped == 2
    [warning] = warnings.list()  # one warning for the pauses, the newest words
    assert warning.count == 2
    assert warning.message == (
        "as its pause ended, still so: the page's events came to 9.5 MB/s, over the budget "
        "of 4.0 MB/s (RRSTREAM_MAX_EVENT_BYTES_PER_S) (measured in the page, nothing of it "
        "sent); paused again for 2 s (2 stretches left out so far)")
