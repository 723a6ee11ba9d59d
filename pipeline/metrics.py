"""Prometheus metrics through `ray.util.metrics` (exported by every node's metrics agent).

Each class is created inside the actor that reports it; Ray prefixes names with `ray_`.
"""

from __future__ import annotations

import time

from ray.util.metrics import Counter, Gauge, Histogram

LATENCY_BOUNDARIES_MS = [5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000]
# A replica sends thousands of frames a second; observing each one cost 7% of its CPU.
# One observation per this many seconds is plenty for a histogram scraped every few.
_LATENCY_SAMPLE_EVERY_S = 0.01


class RegistryMetrics:
    def __init__(self) -> None:
        self._sessions = Gauge("rrstream_sessions", "Sessions by state.", tag_keys=("state",))
        self._queue = Gauge("rrstream_queue_length", "Sessions waiting for a browser slot.")

    def report(self, by_state: dict[str, int], queued: int) -> None:
        for state, count in by_state.items():
            self._sessions.set(count, tags={"state": state})
        self._queue.set(queued)


class StreamMetrics:
    def __init__(self) -> None:
        self._events = Counter("rrstream_events_total", "rrweb events recorded.")
        self._bytes = Counter(
            "rrstream_bytes_total",
            "Stream bytes, before and after compression; canvas: the canvas pictures among "
            "them.", tag_keys=("kind",))

    def recorded(self, events: int, raw: int, compressed: int, canvas: int = 0) -> None:
        """`canvas`: the share of `raw` that is canvas pictures."""
        if events:
            self._events.inc(events)
        if raw:
            self._bytes.inc(raw, tags={"kind": "raw"})
        if compressed:
            self._bytes.inc(compressed, tags={"kind": "compressed"})
        if canvas:
            self._bytes.inc(canvas, tags={"kind": "canvas"})


class GatewayMetrics:
    def __init__(self) -> None:
        self._viewers = Gauge("rrstream_viewers", "Open viewer WebSockets on this replica.")
        self._latency = Histogram(
            "rrstream_latency_ms", "Page event timestamp to the gateway sending its frame.",
            boundaries=LATENCY_BOUNDARIES_MS,
        )
        self._skipped = Counter(
            "rrstream_pictures_skipped_total",
            "Canvas pictures sent to a viewer as skipped: a newer picture of the same canvas "
            "superseded them while both waited in the viewer's queue.")
        self._next_sample = 0.0

    def viewers(self, count: int) -> None:
        self._viewers.set(count)

    def latency(self, event_ts_ms: float) -> None:
        """A frame whose newest event the page stamped `event_ts_ms` was just sent; sampled
        at most every 10 ms."""
        now = time.time()
        if now < self._next_sample:
            return
        self._next_sample = now + _LATENCY_SAMPLE_EVERY_S
        self._latency.observe(max(now * 1000.0 - event_ts_ms, 0.0))

    def pictures_skipped(self, count: int) -> None:
        self._skipped.inc(count)


# What `rrstream_restarts_total{kind}` counts: each a part that died and was brought back.
RESTART_KINDS = ("browser", "page", "session", "streamer", "browser_host", "registry")


class RestartMetrics:
    """Restarts by the kind of part that died (RESTART_KINDS); created in the actor that
    brings the part back."""

    def __init__(self) -> None:
        self._restarts = Counter("rrstream_restarts_total",
                                 "Parts that died and were brought back, by kind.",
                                 tag_keys=("kind",))

    def restarted(self, kind: str) -> None:
        if kind not in RESTART_KINDS:
            raise ValueError(f"unknown restart kind {kind!r}")
        self._restarts.inc(tags={"kind": kind})


class SessionMetrics(RestartMetrics):
    """What a session actor reports: its browser's and page's crashes."""


__all__ = ["RESTART_KINDS", "GatewayMetrics", "RegistryMetrics", "RestartMetrics",
           "SessionMetrics", "StreamMetrics"]
