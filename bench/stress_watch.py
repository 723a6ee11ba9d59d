"""What one viewer saw of a stress run, measured through the project's client (serve/client).

The viewer is a `serve.client.Viewer` (protocol v1: hello, welcome, frames decoded with
the codec `welcome` names, sequence checks); it notes each frame's arrival wall time the
moment the socket hands it over, before decoding it. It acks nothing, as a benchmark
viewer always has here (the server then sends as fast as the socket takes).

The stress client decompresses every frame but does not build Python objects for every
event: at 100k+ events/s that alone would take half a core from the pipeline it
measures. It finds the bench markers with a regular expression over the decoded JSON
(the page's `JSON.stringify` writes them in one fixed shape) and takes event counts from
the frame header.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.protocol import End
from serve.client import ClientError, EventType, Frame, Viewer

# rrweb Custom events as the page serializes them: {"type":5,"data":{"tag":…,"payload":…},…}
BENCH_EVENT = re.compile(rb'"type":5,"data":\{"tag":"bench","payload":\{"i":(\d+),"t":(\d+)\}')
BENCH_DONE = re.compile(rb'"type":5,"data":\{"tag":"bench-done","payload":(\{[^}]*\})')


@dataclass(slots=True)
class Watch:
    """What one viewer saw of one stress run."""

    welcome: dict[str, Any] | None = None
    extensions: list[str] = field(default_factory=list)
    latency_ms: dict[int, float] = field(default_factory=dict)  # bench index -> latency
    duplicates: int = 0
    first_t: float | None = None  # page time of the earliest bench event
    last_arrival: float | None = None  # wall time of the last bench event's frame
    done: dict[str, Any] | None = None  # the page's "bench-done" payload
    frames: int = 0
    batches: int = 0
    events: int = 0
    bytes: int = 0
    bad_frames: int = 0  # lines != batches in the header, or a bench event not parsed
    gaps: int = 0  # a jump in sequence numbers without RESET: the protocol forbids it
    resets: int = 0  # RESET frames after the first one: the viewer was moved forward
    page_to_ingest_ms: list[float] = field(default_factory=list)  # per frame
    ingest_to_client_ms: list[float] = field(default_factory=list)  # per frame
    end: dict[str, Any] | None = None
    error: str | None = None


async def watch_run(url: str, on_attached: Callable[[], None], timeout_s: float,
                    token: str | None = None) -> Watch:
    """Watches until the page's "bench-done" event, the session's end, or `timeout_s`.

    `on_attached` runs once, at the first binary frame: the viewer is in place and the
    page may start emitting.
    """
    out = Watch()
    viewer: Viewer

    def on_frame(frame: Frame) -> None:
        header, arrival = frame.header, frame.arrival_ms
        assert arrival is not None
        if out.frames and header.reset:
            out.resets += 1
        out.frames += 1
        out.batches += frame.batch_count
        out.bytes += frame.size
        out.events += header.event_count
        out.page_to_ingest_ms.append(header.ingest_ts - header.last_ts)
        out.ingest_to_client_ms.append(arrival - header.ingest_ts)
        _take(out, frame.text or b"", arrival)
        if out.frames == 1:
            if viewer.connection is not None:
                out.extensions = viewer.connection.extensions
            on_attached()

    viewer = Viewer(url, acks=False, keep_frames=False, on_frame=on_frame, token=token)
    try:
        async with asyncio.timeout(timeout_s), contextlib.aclosing(viewer.messages()) as items:
            async for item in items:
                if isinstance(item, End):
                    out.end = item.model_dump()
                    break
                if out.done is not None:
                    break
    except TimeoutError:
        out.error = f"no bench-done within {timeout_s:.0f} s"
    except ClientError as exc:
        out.error = str(exc)
    out.welcome = viewer.welcomes[0].model_dump() if viewer.welcomes else None
    out.gaps = len(viewer.gaps)
    out.bad_frames += viewer.stats.bad_frames
    return out


def bench_marks(text: bytes) -> tuple[list[tuple[int, float]], bool]:
    """The bench events in a frame's decoded text, as (index, page time `t` in ms), and
    whether every one was read (False: one in a shape the pattern missed). An event's
    latency is its frame's arrival wall time minus `t` (the same machine clock)."""
    marks = [(int(match[1]), float(match[2])) for match in BENCH_EVENT.finditer(text)]
    return marks, len(marks) == text.count(b'"tag":"bench",')


def _take(out: Watch, text: bytes, arrival: float) -> None:
    marks, complete = bench_marks(text)
    if not complete:
        out.bad_frames += 1
    for index, sent in marks:
        if index in out.latency_ms:
            out.duplicates += 1
            continue
        out.latency_ms[index] = arrival - sent
        out.first_t = sent if out.first_t is None else min(out.first_t, sent)
        out.last_arrival = arrival
    done = BENCH_DONE.search(text)
    if done is not None:
        out.done = orjson.loads(done[1])


@dataclass(slots=True)
class FirstSnapshot:
    welcome_ms: float | None = None
    first_frame_ms: float | None = None
    snapshot_taken_ms: float | None = None  # the FullSnapshot's own (page) timestamp
    snapshot_ingested_ms: float | None = None  # when the streamer received its batch
    full_snapshot_ms: float | None = None  # when the viewer received it
    error: str | None = None


async def time_first_snapshot(url: str, t0: float, timeout_s: float) -> FirstSnapshot:
    """Milliseconds from `t0` (wall ms) to welcome, first frame and first FullSnapshot."""
    out = FirstSnapshot()
    viewer = Viewer(url, acks=False, keep_frames=False)
    try:
        async with asyncio.timeout(timeout_s):
            conn = await viewer.connect()
            out.welcome_ms = time.time() * 1000.0 - t0
            try:
                while out.full_snapshot_ms is None:
                    frame = await conn.next_frame()
                    assert frame.arrival_ms is not None
                    arrival = frame.arrival_ms - t0
                    out.first_frame_ms = out.first_frame_ms or arrival
                    if frame.full_snapshot:
                        snapshot = next(e for e in frame.events
                                        if e["type"] == EventType.FULL_SNAPSHOT)
                        out.full_snapshot_ms = arrival
                        out.snapshot_taken_ms = snapshot["timestamp"] - t0
                        out.snapshot_ingested_ms = frame.header.ingest_ts - t0
            finally:
                await conn.close()
    except TimeoutError:
        out.error = f"no FullSnapshot within {timeout_s:.0f} s"
    except ClientError as exc:
        out.error = str(exc)
    return out


__all__ = ["BENCH_DONE", "BENCH_EVENT", "FirstSnapshot", "Watch", "bench_marks",
           "time_first_snapshot", "watch_run"]
