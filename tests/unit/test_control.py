"""Workflow control's decisions (pipeline/control.py): which state a pause, a resume or
added steps move a session to, the bounded audit list, and the event in the stream."""

from __future__ import annotations

import itertools

import orjson
import pytest

from pipeline.control import CONTROL_TAG, ControlLog, control_batch, next_state
from pipeline.errors import ControlRefused
from pipeline.models import SESSION_TRANSITIONS, ControlAction, SessionState

S = SessionState
A = ControlAction


@pytest.mark.parametrize(("state", "action", "moved"), [
    (S.RUNNING, A.PAUSE, S.PAUSED),
    (S.PAUSED, A.RESUME, S.RUNNING),
    (S.RUNNING, A.STEPS, S.RUNNING),
    (S.PAUSED, A.STEPS, S.PAUSED),
    (S.IDLE, A.STEPS, S.RUNNING),
])
def test_what_each_action_moves_a_session_to(state: SessionState, action: ControlAction,
                                             moved: SessionState) -> None:
    assert next_state("s1", state, action) is moved
    assert moved is state or moved in SESSION_TRANSITIONS[state], "a legal transition"


@pytest.mark.parametrize(("state", "action", "words"), [
    (S.PENDING, A.PAUSE, "session s1 is pending: only a running session can be paused"),
    (S.STARTING, A.PAUSE, "session s1 is starting: only a running session can be paused"),
    (S.IDLE, A.PAUSE, "session s1 is idle: only a running session can be paused"),
    (S.PAUSED, A.PAUSE, "session s1 is paused: only a running session can be paused"),
    (S.RUNNING, A.RESUME, "session s1 is running: only a paused session can be resumed"),
    (S.STOPPED, A.STEPS, "session s1 is stopped: steps can be added to a running, paused "
                         "or idle session only"),
    (S.STARTING, A.STEPS, "session s1 is starting: steps can be added"),
])
def test_any_other_state_refuses_in_words(state: SessionState, action: ControlAction,
                                          words: str) -> None:
    with pytest.raises(ControlRefused) as refused:
        next_state("s1", state, action)
    assert str(refused.value).startswith(words)
    assert (refused.value.session_id, refused.value.action) == ("s1", action.value)


def test_no_action_is_taken_by_a_session_that_is_ending_or_has_ended() -> None:
    for state, action in itertools.product((S.STOPPING, S.STOPPED, S.FAILED), A):
        with pytest.raises(ControlRefused):
            next_state("s1", state, action)


def test_paused_is_left_only_by_a_resume_a_stop_or_a_failure() -> None:
    assert SESSION_TRANSITIONS[S.PAUSED] == {S.RUNNING, S.STOPPING, S.FAILED}
    assert S.PAUSED in SESSION_TRANSITIONS[S.STARTING], "a session restarted while paused"


def test_the_log_keeps_the_newest_and_counts_the_rest() -> None:
    clock = itertools.count(100)
    log = ControlLog(keep=3, clock=lambda: float(next(clock)))
    for n in range(5):
        log.add(A.STEPS, "key:abc", steps=n)
    assert [c.steps for c in log.list()] == [2, 3, 4]
    assert (log.dropped, log.total) == (2, 5)
    assert [c.at for c in log.list()] == [102.0, 103.0, 104.0]
    again = ControlLog(keep=2)
    again.restore(log.list(), log.dropped)  # a smaller log drops the oldest it is given
    assert [c.steps for c in again.list()] == [3, 4] and again.dropped == 3


def test_a_change_is_one_custom_event_at_its_moment() -> None:
    change = ControlLog(clock=lambda: 1_700_000_000.5).add(A.PAUSE, "api")
    batch = control_batch(change)
    assert (batch.checkout, batch.event_count, batch.error) == (False, 1, None)
    assert batch.first_ts == batch.last_ts == 1_700_000_000_500.0
    assert orjson.loads(batch.text) == [{"type": 5, "timestamp": 1_700_000_000_500.0, "data": {
        "tag": CONTROL_TAG, "payload": {"action": "pause", "by": "api",
                                        "at": 1_700_000_000.5}}}]
