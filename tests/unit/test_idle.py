"""IdleTimeouts: an idle, unwatched session is stopped after its timeout, and only then."""

from __future__ import annotations

from pipeline.idle import IdleTimeouts


def test_only_idle_and_unwatched_time_counts() -> None:
    timeouts = IdleTimeouts(60)
    assert not timeouts.expired("s", 0, idle=True, viewers=0)
    assert not timeouts.expired("s", 59, idle=True, viewers=0)
    assert not timeouts.expired("s", 70, idle=True, viewers=1)  # a viewer: the clock restarts
    assert not timeouts.expired("s", 100, idle=True, viewers=0)
    assert not timeouts.expired("s", 150, idle=False, viewers=0)  # a step runs again
    assert not timeouts.expired("s", 160, idle=True, viewers=0)
    assert timeouts.expired("s", 220, idle=True, viewers=0)


def test_zero_turns_it_off_and_a_session_own_timeout_wins() -> None:
    assert not IdleTimeouts(0).expired("s", 10**9, idle=True, viewers=0)
    timeouts = IdleTimeouts(1800)
    assert not timeouts.expired("a", 0, idle=True, viewers=0, own_timeout_s=0)
    assert not timeouts.expired("a", 10**6, idle=True, viewers=0, own_timeout_s=0)
    timeouts.expired("b", 0, idle=True, viewers=0, own_timeout_s=5)
    assert timeouts.expired("b", 5, idle=True, viewers=0, own_timeout_s=5)
