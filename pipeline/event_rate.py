"""EventRate: how a page that emits too many events is recorded coarser instead of dropped.

Dropping one incremental event corrupts the replay for every viewer, so a page emitting
over RRSTREAM_MAX_EVENTS_PER_S (mousemove and scroll storms, mutation floods) is told
to record with coarser sampling, which rrweb can only change by starting again: a new
Meta + FullSnapshot, so the stream stays consistent. Sampling cannot thin out
mutations, so a page still over the limit at the coarsest level has its recording
paused for a moment: a whole stretch left out, ended by a new checkout, never single
events. Once the page has been calm for a while it gets one level finer again.

The deciding is here, plain and clock-injected (tests/unit/test_event_rate.py); the
session measures (events per push of its outbox) and acts (frontend/src/recorder.js
`degrade` and `pause`).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.config import Settings

_WINDOW_S = 1.0  # the rate is measured over at least this long
_SETTLE_S = 2.0  # after an action, its effect is measured before the next
_CALM_S = 30.0  # under a quarter of the limit this long: one level finer
_CALM_SHARE = 0.25
PAUSE_S = 1.0  # a stretch left out at the coarsest level


class RateAction(enum.StrEnum):
    COARSER = "coarser"  # restart rrweb with the next coarser sampling
    PAUSE = "pause"  # the coarsest already: stop recording for PAUSE_S, then a checkout
    FINER = "finer"  # calm again: one level back


@dataclass(slots=True, frozen=True)
class RateDecision:
    action: RateAction
    level: int  # the sampling level from now on
    per_s: float  # the rate measured


class EventRate:
    """Fed the events of each push; says when the page must be recorded differently.
    `levels` is the number of sampling levels (level 0 is the configured sampling)."""

    def __init__(self, max_per_s: float, levels: int,
                 clock: Callable[[], float] = time.monotonic, window_s: float = _WINDOW_S,
                 settle_s: float = _SETTLE_S, calm_s: float = _CALM_S) -> None:
        if levels < 1:
            raise ValueError("at least one sampling level")
        self._max = max_per_s
        self._top = levels - 1
        self._clock = clock
        self._window_s = window_s
        self._settle_s = settle_s
        self._calm_s = calm_s
        self.level = 0
        self._since = clock()
        self._events = 0
        self._acted_at = float("-inf")
        self._busy_at = self._since  # the last window over a quarter of the limit

    def count(self, events: int) -> RateDecision | None:
        now = self._clock()
        self._events += events
        elapsed = now - self._since
        if elapsed < self._window_s:
            return None
        per_s = self._events / elapsed
        self._since, self._events = now, 0
        if per_s > self._max * _CALM_SHARE:
            self._busy_at = now
        if per_s > self._max:
            if now - self._acted_at < self._settle_s:
                return None  # the last action has not shown its effect yet
            self._acted_at = now
            if self.level < self._top:
                self.level += 1
                return RateDecision(RateAction.COARSER, self.level, per_s)
            return RateDecision(RateAction.PAUSE, self.level, per_s)
        if self.level > 0 and now - self._busy_at >= self._calm_s:
            self.level -= 1
            self._acted_at = self._busy_at = now
            return RateDecision(RateAction.FINER, self.level, per_s)
        return None


def sampling_levels(settings: Settings) -> list[dict[str, object]]:
    """rrweb's `sampling` option per level: the configured one, then coarser ones."""
    scroll, media = settings.sampling_scroll_ms, settings.sampling_media_ms
    return [
        {"scroll": scroll, "media": media, "input": settings.sampling_input},
        # Mouse moves at most every 200 ms, scrolls and media 4x rarer, inputs last only.
        {"mousemove": 200, "scroll": max(scroll * 4, 400), "media": max(media * 4, 1_600),
         "input": "last"},
        # No mouse moves; of mouse interactions only clicks.
        {"mousemove": False, "scroll": max(scroll * 10, 1_000), "media": max(media * 10, 4_000),
         "input": "last", "mouseInteraction": {
             "MouseUp": False, "MouseDown": False, "Click": True, "ContextMenu": False,
             "DblClick": True, "Focus": False, "Blur": False, "TouchStart": False,
             "TouchMove_Departed": False, "TouchEnd": False, "TouchCancel": False}},
    ]


__all__ = ["PAUSE_S", "EventRate", "RateAction", "RateDecision", "sampling_levels"]
