"""PageLimits: what a session's page did that the session bounds, counted into its status.

Dialogs and popups (pipeline/page_guard.py) and the page's event rate and bytes
(pipeline/event_rate.py) each become one warning that counts its repeats, plus counters
in the session's status; a rate over a limit also tells the recorder to record coarser
or to pause. Plain Python over two small Protocols, so it is tested without a
browser (tests/unit/test_page_limits.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from playwright.async_api import Error as PlaywrightError

from pipeline.errors import RRStreamError, describe_error
from pipeline.event_rate import EventRate, RateAction, RateDecision
from pipeline.models import WarningKind
from pipeline.page_guard import Disturbance, Notice
from pipeline.warning_log import WarningLog

_log = logging.getLogger(__name__)
_ANSWER_S = 2.0


class RateControl(Protocol):
    """The page's recorder (pipeline/recorder.py PageRecorder)."""

    async def degrade(self, level: int) -> None: ...

    async def pause(self, seconds: float) -> None: ...


class PageLimits:
    def __init__(self, max_events_per_s: int, levels: int, warnings: WarningLog,
                 clock: Callable[[], float] = time.time,
                 max_event_bytes_per_s: int = 0) -> None:
        """`clock`: Unix time, s (the page's events carry Unix milliseconds)."""
        self._max = max_events_per_s
        self._max_bytes = max_event_bytes_per_s
        self._clock = clock
        self._page_now = clock()
        self._rate = EventRate(max_events_per_s, levels, lambda: self._page_now,
                               max_bytes_per_s=max_event_bytes_per_s)
        self._top = levels - 1
        self._warnings = warnings
        self.dialogs = 0
        self.popups = 0
        self.stretches_dropped = 0

    @property
    def sampling_level(self) -> int:
        return self._rate.level

    def notice(self, notice: Notice) -> None:
        if notice.kind is Disturbance.DIALOG:
            self.dialogs += notice.count
            total, kind = self.dialogs, WarningKind.DIALOG
            message = (f"the page opened a dialog, dismissed at once: {notice.what}"
                       if total == 1 else f"the page opened {total:,} dialogs, each dismissed "
                       f"at once; the last: {notice.what}")
        else:
            self.popups += notice.count
            total, kind = self.popups, WarningKind.POPUP
            message = (f"the page tried to open a window, refused: {notice.what}"
                       if total == 1 else f"the page tried to open {total:,} windows, each "
                       f"refused or closed at once; the last: {notice.what}")
        self._warnings.add(kind, message, notice.url, key=kind.value, count=notice.count)

    def counted(self, events: int, nbytes: int = 0,
                page_time: float | None = None) -> RateDecision | None:
        """`events` more were handed on, `nbytes` of them incremental events' bytes, the
        newest made by the page at `page_time` (Unix s; the clock's now if not given); a
        decision when the recording must change (it is in the warnings already; `apply`
        carries it out). The rate is measured on the page's clock: a node too busy to carry
        a flood as fast as the page makes it (its shared browser server, the session, the
        streamer all behind) still sees the page's own rate, not what got through."""
        self._advance(page_time)
        decision = self._rate.count(events, nbytes)
        if decision is None:
            return None
        return self._report(decision)

    def still_over(self, per_s: float, bytes_per_s: float,
                   page_time: float | None = None) -> RateDecision:
        """The page's recorder measured, at a pause's end, that the page is still over a
        limit (`per_s` events, `bytes_per_s` of them a second, at `page_time`, Unix s) and
        stayed paused: the next, longer pause, in the warnings already."""
        self._advance(page_time)
        return self._report(self._rate.still_over(per_s, bytes_per_s), still=True)

    def _advance(self, page_time: float | None) -> None:
        self._page_now = max(self._page_now,
                             self._clock() if page_time is None else page_time)

    def _report(self, decision: RateDecision, still: bool = False) -> RateDecision:
        if decision.over == "bytes":
            over = (f"the page's events came to {decision.bytes_per_s / 1e6:,.1f} MB/s, over "
                    f"the budget of {self._max_bytes / 1e6:,.1f} MB/s "
                    "(RRSTREAM_MAX_EVENT_BYTES_PER_S)")
        else:
            over = (f"the page emitted {decision.per_s:,.0f} events/s, over the limit of "
                    f"{self._max:,} (RRSTREAM_MAX_EVENTS_PER_S)")
        if decision.action is RateAction.COARSER:
            message = (f"{over}: recorded with coarser sampling (level {decision.level} of "
                       f"{self._top}) from a new checkout")
        elif decision.action is RateAction.PAUSE:
            self.stretches_dropped += 1
            where = (" at the coarsest sampling" if decision.over == "events" else "")
            if still:
                message = (f"as its pause ended, still so: {over}{where} (measured in the "
                           f"page, nothing of it sent); paused again for {decision.pause_s:g} "
                           f"s ({self.stretches_dropped:,} stretches left out so far)")
            else:
                message = (f"{over}{where}: recording paused for {decision.pause_s:g} s and "
                           f"resumed with a new checkout ({self.stretches_dropped:,} such "
                           "stretches left out so far)")
        else:
            message = (f"the page's event rate is back under the limits "
                       f"({decision.per_s:,.0f} events/s, {decision.bytes_per_s / 1e6:,.1f} "
                       f"MB/s): recorded at sampling level {decision.level} from a new "
                       "checkout")
        self._warnings.add(WarningKind.EVENT_RATE, message,
                           key=f"event_rate:{decision.action}:{decision.over}")
        _log.warning("%s", message)
        return decision

    async def apply(self, decision: RateDecision, recorder: RateControl) -> None:
        """Tells the recorder; a page too busy to answer gets the next decision later."""
        try:
            if decision.action is RateAction.PAUSE:
                await asyncio.wait_for(recorder.pause(decision.pause_s), _ANSWER_S)
            else:
                await asyncio.wait_for(recorder.degrade(decision.level), _ANSWER_S)
        except (TimeoutError, PlaywrightError, RRStreamError) as exc:  # navigated, busy, gone
            _log.info("the recorder did not take the %s sampling change: %s",
                      decision.action, describe_error(exc))


__all__ = ["PageLimits", "RateControl"]
