"""Workflow control from outside a session: which state a pause, a resume or added steps
move it to (or why it cannot), and the record of who asked.

`next_state` is the decision, `ControlLog` the bounded audit list a session's status shows
and its Checkpoint carries (so a replacement actor keeps it), and `control_batch` the
rrweb custom event (`rrstream.control`) the session writes into its stream for each
change, so a recording shows where someone paused it or added steps.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from pipeline.error_events import custom_batch
from pipeline.errors import ControlRefused
from pipeline.models import ControlAction, ControlChange, SessionState
from pipeline.protocol import PageBatch

CONTROL_TAG = "rrstream.control"
KEEP = 100  # control changes a status lists; older ones are counted

# Where each action moves a session from the states that allow it.
_MOVES: dict[ControlAction, dict[SessionState, SessionState]] = {
    ControlAction.PAUSE: {SessionState.RUNNING: SessionState.PAUSED},
    ControlAction.RESUME: {SessionState.PAUSED: SessionState.RUNNING},
    ControlAction.STEPS: {SessionState.RUNNING: SessionState.RUNNING,
                          SessionState.PAUSED: SessionState.PAUSED,
                          SessionState.IDLE: SessionState.RUNNING},
    # A person takes control: a running workflow pauses at its next step boundary.
    ControlAction.TAKE: {SessionState.RUNNING: SessionState.PAUSED,
                         SessionState.PAUSED: SessionState.PAUSED,
                         SessionState.IDLE: SessionState.IDLE},
    # Handing back moves nothing by itself; the takeover resumes what its take paused.
    ControlAction.HAND_BACK: {SessionState.RUNNING: SessionState.RUNNING,
                              SessionState.PAUSED: SessionState.PAUSED,
                              SessionState.IDLE: SessionState.IDLE},
}
_ONLY = {
    ControlAction.PAUSE: "only a running session can be paused",
    ControlAction.RESUME: "only a paused session can be resumed",
    ControlAction.STEPS: "steps can be added to a running, paused or idle session only",
    ControlAction.TAKE: "only a running, paused or idle session can be taken control of",
    ControlAction.HAND_BACK: "control can be handed back in a running, paused or idle "
                             "session only",
}


def next_state(session_id: str, state: SessionState, action: ControlAction) -> SessionState:
    """The state `action` moves a session in `state` to; ControlRefused (409) if none."""
    moved = _MOVES[action].get(state)
    if moved is None:
        raise ControlRefused(session_id, action.value, f"is {state}: {_ONLY[action]}")
    return moved


class ControlLog:
    """The newest KEEP control changes of a session, and how many older ones there were."""

    def __init__(self, keep: int = KEEP, clock: Callable[[], float] = time.time) -> None:
        self._changes: deque[ControlChange] = deque(maxlen=keep)
        self._clock = clock
        self.dropped = 0

    def add(self, action: ControlAction, by: str, steps: int | None = None,
            reason: str | None = None) -> ControlChange:
        if len(self._changes) == self._changes.maxlen:
            self.dropped += 1
        change = ControlChange(action=action, by=by, at=self._clock(), steps=steps,
                               reason=reason)
        self._changes.append(change)
        return change

    def list(self) -> list[ControlChange]:
        return list(self._changes)

    @property
    def total(self) -> int:
        """Every change so far, listed or not (it grows with each)."""
        return len(self._changes) + self.dropped

    def restore(self, changes: list[ControlChange], dropped: int) -> None:
        """What a Checkpoint carried: the log of the actor that came before."""
        self._changes.clear()
        self._changes.extend(changes)
        self.dropped = dropped + max(0, len(changes) - len(self._changes))


def control_batch(change: ControlChange) -> PageBatch:
    """The change as a custom event at the moment it was made."""
    return custom_batch(CONTROL_TAG, change.model_dump(mode="json", exclude_none=True),
                        change.at * 1000.0)


__all__ = ["CONTROL_TAG", "KEEP", "ControlLog", "control_batch", "next_state"]
