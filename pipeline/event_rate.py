"""EventRate: how a page that emits too many events, or too many bytes of them, is
recorded coarser instead of dropped.

Dropping one incremental event corrupts the replay for every viewer, so a page emitting
over RRSTREAM_MAX_EVENTS_PER_S (mousemove and scroll storms, mutation floods) is told
to record with coarser sampling, which rrweb can only change by starting again: a new
Meta + FullSnapshot, so the stream stays consistent. Sampling cannot thin out
mutations, so a page still over the limit at the coarsest level has its recording
paused: a whole stretch left out, ended by a new checkout, never single events.

RRSTREAM_MAX_EVENT_BYTES_PER_S bounds the bytes of incremental events (checkouts are
rrweb's own, and not counted): a page that rewrites thousands of elements every frame
stays under the event limit (a few dozen huge events a second) while every byte of it
crosses the shared browser server, the session, the streamer and the recording. Over
the budget, recording pauses at once: coarser sampling would cost a checkout and thin
nothing such a page emits.

Pauses in a row grow (1, 2, 4, 8 s). The page's recorder measures the last second of each
pause itself, running rrweb without sending anything (frontend/src/recorder.js `probe`): a
page still over a limit then stays paused (`still_over`: the next, longer pause), so a
flood that keeps it up crosses the node once, before its first pause, and never again;
a resumed page is judged by the first window after the pause (over the byte budget as
soon as its bytes exceed a whole window's budget). A window under
half the limits, or `calm_s` (30 s) under them, starts them at 1 s again. Half, not
under: a flood running right at the budget (bench/hostile.py's whole-DOM rewrite made
3.8-6 MB/s against 4) had every other window just under it, so its pauses stayed at 1-2
s and it was recorded half the time, each resume a burst of megabytes through the node's
shared browser. Once the page has been calm for a while it gets one sampling level finer
again.

The deciding is here, plain and clock-injected (tests/unit/test_event_rate.py); the
session measures (what each push of its outbox handed on) and acts
(frontend/src/recorder.js `degrade` and `pause`).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pipeline.config import Settings

_WINDOW_S = 1.0  # the rate is measured over at least this long
_SETTLE_S = 2.0  # after a sampling change, its effect is measured before the next
_CALM_S = 30.0  # under a quarter of the limits this long: one level finer
_CALM_SHARE = 0.25
_RESET_SHARE = 0.5  # pauses start at 1 s again only after a window under half the limits
PAUSE_S = 1.0  # the first stretch left out; each next one in a row twice as long
MAX_PAUSE_S = 8.0


class RateAction(enum.StrEnum):
    COARSER = "coarser"  # restart rrweb with the next coarser sampling
    PAUSE = "pause"  # stop recording for `pause_s`, then a checkout
    FINER = "finer"  # calm again: one level back


@dataclass(slots=True, frozen=True)
class RateDecision:
    action: RateAction
    level: int  # the sampling level from now on
    per_s: float  # events/s measured
    bytes_per_s: float = 0.0  # bytes/s of incremental events measured
    over: Literal["events", "bytes"] = "events"  # which limit a COARSER or PAUSE is for
    pause_s: float = 0.0  # a PAUSE's length


class EventRate:
    """Fed what each push handed on; says when the page must be recorded differently.
    `levels` is the number of sampling levels (level 0 is the configured sampling);
    `max_bytes_per_s` 0 is no byte budget."""

    def __init__(self, max_per_s: float, levels: int,
                 clock: Callable[[], float] = time.monotonic, window_s: float = _WINDOW_S,
                 settle_s: float = _SETTLE_S, calm_s: float = _CALM_S,
                 max_bytes_per_s: float = 0) -> None:
        if levels < 1:
            raise ValueError("at least one sampling level")
        self._max = max_per_s
        self._max_bytes = max_bytes_per_s
        self._top = levels - 1
        self._clock = clock
        self._window_s = window_s
        self._settle_s = settle_s
        self._calm_s = calm_s
        self.level = 0
        self._since = clock()  # the window's start; after a pause, when recording resumes
        self._events = 0
        self._bytes = 0
        self._next_at = float("-inf")  # no action before: the last one shows its effect
        self._busy_at = self._since  # the last window over a quarter of a limit
        self._pauses = 0  # in a row
        self._paused_at = float("-inf")  # the last pause's start

    def count(self, events: int, nbytes: int = 0) -> RateDecision | None:
        """`events` more were handed on, `nbytes` of them incremental events' bytes."""
        now = self._clock()
        if now < self._since:
            return None  # paused: what still comes was in flight before
        self._events += events
        self._bytes += nbytes
        elapsed = now - self._since
        # Bytes over a whole window's budget are over it whatever comes next: judged at
        # once, so a flood crosses the node's shared browser for a fraction of a second
        # per window instead of the whole of it.
        if elapsed < self._window_s and not (
                self._max_bytes and self._bytes > self._max_bytes * self._window_s):
            return None
        elapsed = max(elapsed, 1e-3)
        per_s, bytes_per_s = self._events / elapsed, self._bytes / elapsed
        self._since, self._events, self._bytes = now, 0, 0
        over_events = per_s > self._max
        over_bytes = bool(self._max_bytes) and bytes_per_s > self._max_bytes
        if per_s > self._max * _CALM_SHARE or (
                self._max_bytes and bytes_per_s > self._max_bytes * _CALM_SHARE):
            self._busy_at = now
        if over_events or over_bytes:
            if now < self._next_at:
                return None  # the last action has not shown its effect yet
            over: Literal["events", "bytes"] = "events" if over_events else "bytes"
            if over_events and self.level < self._top:
                self.level += 1
                self._next_at = now + self._settle_s
                return RateDecision(RateAction.COARSER, self.level, per_s, bytes_per_s, over)
            return self._pause(now, per_s, bytes_per_s, over)
        if (per_s <= self._max * _RESET_SHARE and not (
                self._max_bytes and bytes_per_s > self._max_bytes * _RESET_SHARE)) or (
                now - self._paused_at >= self._calm_s):
            self._pauses = 0
        if self.level > 0 and now - self._busy_at >= self._calm_s:
            self.level -= 1
            self._busy_at = now
            self._next_at = now + self._settle_s
            return RateDecision(RateAction.FINER, self.level, per_s, bytes_per_s)
        return None


    def still_over(self, per_s: float, bytes_per_s: float) -> RateDecision:
        """The page's recorder measured, at the end of a pause, that the page is still over
        a limit (it runs rrweb for a moment without sending anything: frontend/src/recorder.js
        `probe`), and kept the recording paused: the next, longer pause. So a page that
        keeps up a flood costs the node nothing of it after the first pause, instead of a
        checkout and a window of the flood at every resume."""
        over: Literal["events", "bytes"] = (
            "bytes" if self._max_bytes and bytes_per_s > self._max_bytes else "events")
        now = self._clock()
        self._busy_at = now
        return self._pause(now, per_s, bytes_per_s, over)

    def _pause(self, now: float, per_s: float, bytes_per_s: float,
               over: Literal["events", "bytes"]) -> RateDecision:
        pause = min(PAUSE_S * 2 ** self._pauses, MAX_PAUSE_S)
        self._pauses += 1
        self._paused_at = now
        self._since = now + pause
        self._next_at = self._since  # judged by the window after it
        return RateDecision(RateAction.PAUSE, self.level, per_s, bytes_per_s, over, pause)


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


__all__ = ["MAX_PAUSE_S", "PAUSE_S", "EventRate", "RateAction", "RateDecision",
           "sampling_levels"]
