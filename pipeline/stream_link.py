"""StreamLink: a session's link to its stream, and what happens when the stream goes away.

The batches travel in the Outbox (pipeline/outbox.py). A push that fails means the
node's streamer actor died: with a supervisor (the registry) the session says so and
waits up to RRSTREAM_STREAM_REATTACH_TIMEOUT_S for the stream to be reopened, dropping
what the page records meanwhile (the new stream starts at a new checkout anyway);
without one, or past the wait, the session fails. At the end of a stop the outbox is
drained and the stream closed, unless it was lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import Error as PlaywrightError

from pipeline.asset_capture import AssetSink
from pipeline.errors import RRStreamError, describe_error, unwrap
from pipeline.logs import Log
from pipeline.models import WarningKind
from pipeline.outbox import BatchSink, Outbox
from pipeline.protocol import PageBatch
from pipeline.session_browser import SessionBrowser
from pipeline.teardown import bounded, time_left
from pipeline.warning_log import WarningLog

_ANSWER_S = 2.0  # a page asked to take a checkout now


class StreamLink:
    """`report_lost()` tells the session's supervisor the stream was lost (None: there is
    none, and a lost stream fails the session); `streaming()` says whether the session is
    starting or live (a lost stream is waited for only then); `fail(reason)` ends the
    session; `lost_late(reason)` is told of a stream lost while it stops. `on_receiver`,
    `on_sent` and `prepare` are the Outbox's."""

    def __init__(self, session_id: str, sink: BatchSink | None, reattach_timeout_s: float,
                 browser: SessionBrowser, warnings: WarningLog, log: Log, *,
                 report_lost: Callable[[], None] | None,
                 streaming: Callable[[], bool],
                 fail: Callable[[str], None],
                 lost_late: Callable[[str], None],
                 spawn: Callable[[Awaitable[Any], str], asyncio.Task[Any]],
                 on_receiver: Callable[[Callable[[PageBatch], None]], None],
                 on_sent: Callable[[list[PageBatch]], None],
                 prepare: Callable[[list[PageBatch]], list[PageBatch]] | None) -> None:
        self.session_id = session_id
        self.report_lost = report_lost
        self.outbox = Outbox(sink, self._push_failed, on_receiver, on_sent, prepare)
        self.lost_at: float | None = None  # when a push failed, until the stream is reopened
        self._reattach_timeout_s = reattach_timeout_s
        self._browser = browser
        self._warnings = warnings
        self._log = log
        self._streaming = streaming
        self._fail = fail
        self._lost_late = lost_late
        self._spawn = spawn
        self._awaiting: asyncio.Task[None] | None = None

    def reopened(self, sink: BatchSink, started: bool) -> None:
        """The stream was reopened: batches go to `sink`. Once `started`, from the page's
        next checkout on, which it takes now (a new stream must begin at a segment);
        before, the page's first snapshot begins it."""
        waiter, self._awaiting = self._awaiting, None
        if waiter is not None:
            waiter.cancel()
        if self.lost_at is not None:
            self.lost_at = None
            self._warnings.add(WarningKind.STREAM_LOST, "the stream was reopened")
        if not started:
            self.outbox.sink = sink
            return
        self.outbox.attach(sink)
        self._spawn(self._checkout_now(), "checkout")
        self._log.info("session %s streams to a reopened stream", self.session_id)

    def asset_sink(self) -> AssetSink | None:
        """Where captured assets go: the stream's node, while there is a stream."""
        sink = self.outbox.sink
        return sink if isinstance(sink, AssetSink) and self.lost_at is None else None

    async def drain(self, deadline: float) -> None:
        """Hands on what is queued and closes the stream, by `deadline` (time.monotonic())."""
        if not await self.outbox.drain(time_left(deadline, 5.0)):
            self._log.error("session %s: %d batches not handed on before the stop's deadline",
                            self.session_id, self.outbox.queued)
        sink = self.outbox.sink
        if sink is not None and self.lost_at is None:
            await bounded(sink.close(), time_left(deadline + 0.3, 0.3), "closing the stream",
                          self._log)

    async def _checkout_now(self) -> None:
        recorder = self._browser.recorder
        if recorder is None or self._browser.page is None:
            return  # the page is being (re)opened: its first snapshot starts the stream
        try:
            if not await asyncio.wait_for(recorder.checkout(), _ANSWER_S):
                await asyncio.wait_for(recorder.restart(), _ANSWER_S)
        except TimeoutError:
            self._log.warning("session %s: the page took no checkout within %.0f s (it is "
                              "busy); the reopened stream starts at its next one",
                              self.session_id, _ANSWER_S)
        except (PlaywrightError, RRStreamError) as exc:
            self._log.info("session %s: no checkout now (%s); the reopened stream starts at "
                           "the next page's", self.session_id, describe_error(exc))

    def _push_failed(self, exc: Exception) -> bool:
        """A push to the stream failed: without a supervisor (or while stopping) the session
        cannot stream any more; with one it waits for `reopened`."""
        reason = describe_error(unwrap(exc))
        if not self._streaming():
            self._lost_late(f"stream lost: {reason}")
            self._log.error("session %s: stream lost while stopping: %s", self.session_id,
                            reason)
            return False
        if self.report_lost is None:
            self._fail(f"stream lost: {reason}")
            return False
        self.outbox.suspend()
        self.lost_at = time.time()
        timeout = self._reattach_timeout_s
        message = (f"a push to the stream failed ({reason}); waiting up to {timeout:g} s for "
                   "it to be reopened")
        self._warnings.add(WarningKind.STREAM_LOST, message)
        self._log.warning("session %s: %s", self.session_id, message)
        try:
            self.report_lost()
        except Exception as report_error:
            self._log.warning("session %s: telling the supervisor the stream was lost failed: "
                              "%s", self.session_id, describe_error(report_error))
        self._awaiting = self._spawn(self._fail_unless_reattached(timeout), "await-stream")
        return True

    async def _fail_unless_reattached(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self.lost_at is not None:
            self._fail(f"its stream was lost and not reopened within {seconds:g} s")


__all__ = ["StreamLink"]
