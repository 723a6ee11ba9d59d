"""ErrorEvents: what went wrong in a session, written into its recording; and
`custom_batch`, how the session writes any event of its own into its stream.

A failed step, the session's own failure and an error the page threw each become an
rrweb custom event (`{"type": 5, "data": {"tag": "rrstream.error", "payload": {"kind",
"message"}}}`) in the session's stream, where the player marks it on its timeline, and
a batch flagged with it (PageBatch.error), so the recording counts it without parsing
events (`has_errors` in `GET /recordings`). At most MAX_RECORDED per session: a page
that throws in a loop adds no more than that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import orjson

from pipeline.protocol import PageBatch

ERROR_TAG = "rrstream.error"
MAX_RECORDED = 100
ErrorKind = Literal["step", "session", "page"]


def custom_batch(tag: str, payload: dict[str, Any], ts: float,
                 error: str | None = None) -> PageBatch:
    """A batch of one rrweb custom event (type 5) the session makes itself, at page time
    `ts` (ms since the epoch); `error` flags it as an error for the recording."""
    event = orjson.dumps({"type": 5, "data": {"tag": tag, "payload": payload},
                          "timestamp": ts}).decode()
    return PageBatch(False, 1, ts, ts, f"[{event}]", error=error)


class ErrorEvents:
    def __init__(self, receiver: Callable[[], Callable[[PageBatch], None]],
                 clock: Callable[[], float] = time.time) -> None:
        """`receiver()`: where the session's batches go now (its outbox's receiver)."""
        self._receiver = receiver
        self._clock = clock
        self.recorded = 0

    def add(self, kind: ErrorKind, message: str) -> None:
        if self.recorded >= MAX_RECORDED:
            return
        self.recorded += 1
        payload = {"kind": kind, "message": message[:2_000]}
        self._receiver()(custom_batch(ERROR_TAG, payload, self._clock() * 1000.0,
                                      error=message))


__all__ = ["ERROR_TAG", "MAX_RECORDED", "ErrorEvents", "ErrorKind", "custom_batch"]
