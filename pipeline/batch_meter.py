"""BatchMeter: measures what a session's outbox handed on, and has the page's recorder obey
the event limits.

Once per push, not per batch: its canvas pictures' bytes (pipeline/canvas_meter.py), its
events and bytes against RRSTREAM_MAX_EVENTS_PER_S and RRSTREAM_MAX_EVENT_BYTES_PER_S
(PageLimits decides, pipeline/page_limits.py; the meter carries the decision to the
recorder while the session is live) and batches so large they are reported (a
`large_batch` warning). A checkout's bytes are rrweb's own doing, not counted against the
page. Plain Python over callables, so it is tested without a browser.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pipeline.canvas_meter import CanvasMeter
from pipeline.models import WarningKind
from pipeline.page_limits import PageLimits, RateControl
from pipeline.protocol import PageBatch
from pipeline.recorder import StillOver
from pipeline.warning_log import WarningLog

LARGE_BATCH_CHARS = 4 * 2**20  # a batch this big is reported (a `large_batch` warning)


class BatchMeter:
    """`recorder()` is the page's recorder now (None while there is none), `url()` the
    page's URL; `live()` whether the session is running, paused or idle (only then is the
    recorder told); `spawn(coro, name)` runs a task the session keeps."""

    def __init__(self, limits: PageLimits, canvas: CanvasMeter, warnings: WarningLog, *,
                 recorder: Callable[[], RateControl | None],
                 url: Callable[[], str | None],
                 live: Callable[[], bool],
                 spawn: Callable[[Awaitable[Any], str], object]) -> None:
        self._limits = limits
        self._canvas = canvas
        self._warnings = warnings
        self._recorder = recorder
        self._url = url
        self._live = live
        self._spawn = spawn

    def handed_on(self, batches: list[PageBatch]) -> None:
        """The outbox handed on `batches`: a page over RRSTREAM_MAX_EVENTS_PER_S is recorded
        coarser, or paused, and one over RRSTREAM_MAX_EVENT_BYTES_PER_S paused
        (pipeline/event_rate.py)."""
        events = nbytes = 0
        newest = 0.0
        for batch in batches:
            self._canvas.add(batch.canvas_chars)
            events += batch.event_count
            newest = max(newest, batch.last_ts)
            if not batch.checkout:
                nbytes += len(batch.text)
            if len(batch.text) >= LARGE_BATCH_CHARS:
                self._large_batch(batch)
        decision = self._limits.counted(events, nbytes, newest / 1000.0 if newest else None)
        recorder = self._recorder()
        if decision is not None and recorder is not None and self._live():
            self._spawn(self._limits.apply(decision, recorder), "event-rate")

    def still_over(self, notice: StillOver) -> None:
        """The paused page is still over a limit (pipeline/event_rate.py `still_over`)."""
        decision = self._limits.still_over(notice.per_s, notice.bytes_per_s, notice.page_time)
        recorder = self._recorder()
        if recorder is not None and self._live():
            self._spawn(self._limits.apply(decision, recorder), "event-rate")

    def _large_batch(self, batch: PageBatch) -> None:
        what = "snapshot" if batch.checkout else "batch of changes"
        self._warnings.add(WarningKind.LARGE_BATCH,
                           f"the page sent a {len(batch.text) / 1e6:.1f} MB {what} at once "
                           f"(a very large DOM); it came in pieces, so as not to hold up "
                           f"other sessions", self._url(), key="large-batch")


__all__ = ["LARGE_BATCH_CHARS", "BatchMeter"]
