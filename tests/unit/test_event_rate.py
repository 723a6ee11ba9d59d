"""How a page over RRSTREAM_MAX_EVENTS_PER_S or RRSTREAM_MAX_EVENT_BYTES_PER_S is recorded
coarser, paused, then let back."""

from __future__ import annotations

import pytest

from pipeline.config import Settings
from pipeline.event_rate import (
    MAX_PAUSE_S,
    PAUSE_S,
    EventRate,
    RateAction,
    RateDecision,
    sampling_levels,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(rate: EventRate, clock: Clock, per_s: int, seconds: float, step_s: float = 0.1,
         bytes_per_s: int = 0) -> list[tuple[RateAction, int]]:
    """Pushes of `per_s * step_s` events (and `bytes_per_s * step_s` bytes) every `step_s`
    for `seconds`; the decisions."""
    return [(d.action, d.level) for d in decide(rate, clock, per_s, seconds, step_s,
                                                bytes_per_s)]


def decide(rate: EventRate, clock: Clock, per_s: int, seconds: float, step_s: float = 0.1,
           bytes_per_s: int = 0) -> list[RateDecision]:
    decisions = []
    for _ in range(round(seconds / step_s)):
        clock.now += step_s
        decision = rate.count(int(per_s * step_s), int(bytes_per_s * step_s))
        if decision is not None:
            decisions.append(decision)
    return decisions


def test_a_page_under_the_limit_is_left_alone() -> None:
    clock = Clock()
    rate = EventRate(50_000, 3, clock)
    assert feed(rate, clock, 49_000, 60) == []
    assert rate.level == 0


def test_a_page_over_the_limit_gets_coarser_once_per_settling_time_then_paused() -> None:
    clock = Clock()
    rate = EventRate(50_000, 3, clock, settle_s=2.0)
    decisions = decide(rate, clock, 200_000, 6.5)
    # One decision per 2 s at most: level 1, level 2, then the coarsest pauses.
    assert [(d.action, d.level, d.over) for d in decisions] == [
        (RateAction.COARSER, 1, "events"), (RateAction.COARSER, 2, "events"),
        (RateAction.PAUSE, 2, "events")]
    assert decisions[-1].pause_s == PAUSE_S
    assert rate.level == 2


def test_pauses_in_a_row_grow_and_start_again_after_a_window_under_the_limit() -> None:
    clock = Clock()
    rate = EventRate(50_000, 1, clock)
    pauses = [d.pause_s for d in decide(rate, clock, 200_000, 40)]
    assert pauses[:5] == [1.0, 2.0, 4.0, 8.0, MAX_PAUSE_S]
    assert set(pauses[4:]) == {MAX_PAUSE_S}
    # Each pause is judged by the first window after it: about 1 s recorded in 9.
    assert len(pauses) <= 1 + 40 // (MAX_PAUSE_S + 1) + 4
    feed(rate, clock, 0, MAX_PAUSE_S)  # the last pause ends
    assert feed(rate, clock, 1_000, 1.5) == []  # a window under the limit
    assert [d.pause_s for d in decide(rate, clock, 200_000, 1.5)] == [PAUSE_S]


def test_a_page_hovering_just_under_the_budget_between_pauses_keeps_them_growing() -> None:
    # The whole-DOM rewrite of bench/hostile.py: windows of 3-3.8 MB between ones over 4.
    clock = Clock()
    rate = EventRate(50_000, 1, clock, max_bytes_per_s=4_000_000)
    pauses = [d.pause_s for d in decide(rate, clock, 100, 1.0, bytes_per_s=6_000_000)]
    for _ in range(4):
        # What comes while paused is not counted; then a window just under the budget.
        assert feed(rate, clock, 100, pauses[-1] + 1.5, bytes_per_s=3_000_000) == []
        pauses += [d.pause_s for d in decide(rate, clock, 100, 1.0, bytes_per_s=6_000_000)]
    assert pauses == [1.0, 2.0, 4.0, 8.0, MAX_PAUSE_S]
    # A window under half the budget starts them at 1 s again.
    feed(rate, clock, 100, MAX_PAUSE_S + 1.5, bytes_per_s=1_900_000)
    assert [d.pause_s for d in decide(rate, clock, 100, 2.0, bytes_per_s=6_000_000)] == [
        PAUSE_S]


def test_pauses_start_again_after_a_calm_spell_just_under_the_budget() -> None:
    clock = Clock()
    rate = EventRate(50_000, 1, clock, max_bytes_per_s=4_000_000, calm_s=30.0)
    pauses = [d.pause_s for d in decide(rate, clock, 100, 1.0, bytes_per_s=6_000_000)]
    # 30 s under the budget (over half of it) after the pause.
    assert feed(rate, clock, 100, pauses[-1] + 31, bytes_per_s=3_000_000) == []
    assert [d.pause_s for d in decide(rate, clock, 100, 2.0, bytes_per_s=6_000_000)] == [
        PAUSE_S]


def test_a_page_over_the_byte_budget_is_paused_at_once_without_coarser_sampling() -> None:
    clock = Clock()
    rate = EventRate(50_000, 3, clock, max_bytes_per_s=4_000_000)
    # 60 huge events a second (a whole-DOM rewrite every frame): 30 MB/s.
    decisions = decide(rate, clock, 60, 1.25, bytes_per_s=30_000_000)
    assert [(d.action, d.level, d.over) for d in decisions] == [(RateAction.PAUSE, 0, "bytes")]
    assert decisions[0].bytes_per_s == pytest.approx(30_000_000, rel=0.1)
    assert rate.level == 0
    # What comes while paused was in flight: not counted.
    assert rate.count(60, 30_000_000) is None


def test_bytes_over_a_whole_windows_budget_are_judged_before_the_window_ends() -> None:
    clock = Clock()
    rate = EventRate(50_000, 3, clock, max_bytes_per_s=4_000_000)
    # 10 MB/s: a window's 4 MB are spent after 0.4 s, and the page is paused then.
    decisions = decide(rate, clock, 60, 0.5, step_s=0.05, bytes_per_s=10_000_000)
    assert [(d.action, d.pause_s) for d in decisions] == [(RateAction.PAUSE, PAUSE_S)]
    assert decisions[0].bytes_per_s == pytest.approx(10_000_000, rel=0.2)
    # After the pause, the first window judges it, early too.
    clock.now += PAUSE_S
    decisions = decide(rate, clock, 60, 0.5, step_s=0.05, bytes_per_s=10_000_000)
    assert [(d.action, d.pause_s) for d in decisions] == [(RateAction.PAUSE, 2 * PAUSE_S)]
    # A window's budget spent slowly is judged at the window's end only: 3.9 MB/s passes.
    slow = EventRate(50_000, 3, clock, max_bytes_per_s=4_000_000)
    assert feed(slow, clock, 60, 10, bytes_per_s=3_900_000) == []


def test_under_the_byte_budget_or_without_one_nothing_changes() -> None:
    clock = Clock()
    under = EventRate(50_000, 3, clock, max_bytes_per_s=4_000_000)
    unbounded = EventRate(50_000, 3, clock)
    for _ in range(600):
        clock.now += 0.1
        assert under.count(500, 350_000) is None  # 5,000 events/s, 3.5 MB/s
        assert unbounded.count(6, 3_000_000) is None  # 30 MB/s, no budget


def test_the_rate_measured_is_the_pages() -> None:
    clock = Clock()
    rate = EventRate(1_000, 2, clock)
    clock.now += 0.5
    assert rate.count(3_000) is None  # under a window: not judged yet
    clock.now += 0.5
    decision = rate.count(0)
    assert decision is not None and decision.per_s == pytest.approx(3_000)


def test_a_calm_page_gets_one_level_finer_per_calm_spell() -> None:
    clock = Clock()
    rate = EventRate(50_000, 3, clock, settle_s=2.0, calm_s=30.0)
    feed(rate, clock, 200_000, 4.05)
    assert rate.level == 2
    # Busy (over a quarter of the limit) but under it: no change, and not calm.
    assert feed(rate, clock, 20_000, 40) == []
    assert feed(rate, clock, 1_000, 29) == []
    # Calm counts from the end of the last busy window (windows are ~1 s).
    assert feed(rate, clock, 1_000, 3) == [(RateAction.FINER, 1)]
    assert feed(rate, clock, 1_000, 28) == []
    assert feed(rate, clock, 1_000, 3) == [(RateAction.FINER, 0)]
    assert feed(rate, clock, 0, 60) == []


def test_a_burst_after_a_quiet_gap_counts_over_the_gap() -> None:
    clock = Clock()
    rate = EventRate(50_000, 3, clock)
    clock.now += 10.0
    assert rate.count(60_000) is None  # 6,000/s over the 10 s since the last look


def test_sampling_levels_start_with_the_configured_one_and_get_coarser() -> None:
    levels = sampling_levels(Settings(sampling_scroll_ms=100, sampling_media_ms=400))
    assert levels[0] == {"scroll": 100, "media": 400, "input": "last"}
    assert [level["scroll"] for level in levels] == sorted(level["scroll"] for level in levels)
    assert levels[-1]["mousemove"] is False
    with pytest.raises(ValueError):
        EventRate(1_000, 0)


def test_a_page_still_over_as_its_pause_ends_stays_paused_longer() -> None:
    clock = Clock()
    rate = EventRate(50_000, 3, clock, max_bytes_per_s=1_000_000)
    [first] = decide(rate, clock, 60, 1.0, bytes_per_s=6_000_000)
    assert (first.action, first.pause_s) == (RateAction.PAUSE, PAUSE_S)
    pauses = [first.pause_s]
    for _ in range(5):  # the page measured each pause's end itself: still over
        clock.now += pauses[-1]
        again = rate.still_over(60, 6_000_000)
        assert (again.action, again.over, again.level) == (RateAction.PAUSE, "bytes", 0)
        pauses.append(again.pause_s)
    assert pauses == [1, 2, 4, 8, MAX_PAUSE_S, MAX_PAUSE_S]
    # What comes before the last pause ends was in flight: not judged.
    clock.now += 1.0
    assert rate.count(6, 1_000_000_000) is None


def test_a_page_still_over_the_event_limit_says_so() -> None:
    clock = Clock()
    rate = EventRate(1_000, 3, clock, max_bytes_per_s=1_000_000)
    assert rate.still_over(5_000, 10_000).over == "events"
    assert rate.still_over(5_000, 2_000_000).over == "bytes"
