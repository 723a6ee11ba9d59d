"""The crash budget: a sliding window, so crashes spread out never fail a session."""

from __future__ import annotations

from pipeline.crashes import CrashBudget, CrashKind


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_crash_more_than_the_limit_within_the_window_gives_up() -> None:
    clock = Clock()
    budget = CrashBudget(limit=3, window_s=60, clock=clock)
    for _ in range(3):
        assert budget.crashed(CrashKind.BROWSER) is None
        clock.now += 10
    assert budget.crashed(CrashKind.BROWSER) == "the browser crashed 4 times within 60 s"
    assert budget.counts == {CrashKind.BROWSER: 4, CrashKind.PAGE: 0}


def test_crashes_spread_out_never_use_the_budget_up() -> None:
    clock = Clock()
    budget = CrashBudget(limit=3, window_s=60, clock=clock)
    for _ in range(50):
        assert budget.crashed(CrashKind.PAGE) is None
        clock.now += 21  # at most 3 in any 60 s
    assert budget.counts[CrashKind.PAGE] == 50


def test_a_crash_leaves_the_window_when_it_is_that_old() -> None:
    clock = Clock()
    budget = CrashBudget(limit=1, window_s=60, clock=clock)
    assert budget.crashed(CrashKind.PAGE) is None
    clock.now += 60
    assert budget.crashed(CrashKind.PAGE) is None
    clock.now += 59.9
    assert budget.crashed(CrashKind.PAGE) == "the page crashed 2 times within 60 s"


def test_page_and_browser_crashes_share_the_budget() -> None:
    clock = Clock()
    budget = CrashBudget(limit=2, window_s=30, clock=clock)
    assert budget.crashed(CrashKind.PAGE) is None
    assert budget.crashed(CrashKind.BROWSER) is None
    assert budget.crashed(CrashKind.PAGE) == "the browser crashed 3 times within 30 s"
