"""A protocol-v1 viewer that decodes every frame and keeps what the benchmark measures.

It speaks exactly what docs/protocol.md describes (hello, welcome, binary frames
decoded with the segment decoder of the codec `welcome` names) and notes the arrival wall time of
each frame the moment `recv()` hands it over, before decoding it.

The stress client decompresses every frame but does not build Python objects for
every event: at 100k+ events/s that alone would take half a core from the
pipeline it measures. It finds the bench markers with a regular expression over
the decoded JSON (the page's `JSON.stringify` writes them in one fixed shape) and
takes event counts from the frame header.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import websockets

from pipeline.codec import SegmentDecoder, make_decoder
from pipeline.protocol import decode_frame

_RRWEB_FULL_SNAPSHOT = 2
# rrweb Custom events as the page serializes them: {"type":5,"data":{"tag":…,"payload":…},…}
_BENCH = re.compile(rb'"type":5,"data":\{"tag":"bench","payload":\{"i":(\d+),"t":(\d+)\}')
_DONE = re.compile(rb'"type":5,"data":\{"tag":"bench-done","payload":(\{[^}]*\})')


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


async def _hello(ws: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "hello", "protocol": 1, "resume_after": None,
                              "token": None}))
    while True:
        message = json.loads(await ws.recv())
        if message.get("type") in ("welcome", "error"):
            return message


def _decoder(welcome: dict[str, Any]) -> SegmentDecoder:
    if welcome.get("type") != "welcome":
        raise ValueError(f"refused: {welcome}")
    return make_decoder(welcome["codec"])


def _extensions(ws: Any) -> list[str]:
    header = ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None
    return [header] if header else []


async def watch_run(url: str, on_attached: Callable[[], None], timeout_s: float) -> Watch:
    """Watches until the page's "bench-done" event, the session's end, or `timeout_s`.

    `on_attached` runs once, at the first binary frame: the viewer is in place and the
    page may start emitting.
    """
    out = Watch()
    last_seq: int | None = None
    try:
        async with asyncio.timeout(timeout_s), websockets.connect(url, max_size=None) as ws:
            out.extensions = _extensions(ws)
            out.welcome = await _hello(ws)
            decoder = _decoder(out.welcome)
            while out.done is None:
                message = await ws.recv()
                arrival = time.time() * 1000.0
                if isinstance(message, str):
                    control = json.loads(message)
                    if control.get("type") == "end":
                        out.end = control
                        break
                    continue
                header, payload = decode_frame(message)
                if last_seq is not None:
                    if header.reset:
                        out.resets += 1
                    elif header.first_seq != last_seq + 1:
                        out.gaps += 1
                last_seq = header.last_seq
                out.frames += 1
                out.batches += header.last_seq - header.first_seq + 1
                out.bytes += len(message)
                out.page_to_ingest_ms.append(header.ingest_ts - header.last_ts)
                out.ingest_to_client_ms.append(arrival - header.ingest_ts)
                text = decoder.decode(payload, segment_start=header.segment_start)
                out.events += header.event_count
                if text.count(b"\n") != header.last_seq - header.first_seq + 1:
                    out.bad_frames += 1
                _take(out, text, arrival)
                if out.frames == 1:
                    on_attached()
    except TimeoutError:
        out.error = f"no bench-done within {timeout_s:.0f} s"
    except (websockets.ConnectionClosed, OSError, ValueError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    return out


def _take(out: Watch, text: bytes, arrival: float) -> None:
    matches = list(_BENCH.finditer(text))
    if len(matches) != text.count(b'"tag":"bench",'):
        out.bad_frames += 1  # a bench event in a shape the pattern missed
    for match in matches:
        index, sent = int(match[1]), float(match[2])
        if index in out.latency_ms:
            out.duplicates += 1
            continue
        out.latency_ms[index] = arrival - sent
        out.first_t = sent if out.first_t is None else min(out.first_t, sent)
        out.last_arrival = arrival
    done = _DONE.search(text)
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
    try:
        async with asyncio.timeout(timeout_s), websockets.connect(url, max_size=None) as ws:
            decoder = _decoder(await _hello(ws))
            out.welcome_ms = time.time() * 1000.0 - t0
            while out.full_snapshot_ms is None:
                message = await ws.recv()
                arrival = time.time() * 1000.0 - t0
                if isinstance(message, str):
                    continue
                out.first_frame_ms = out.first_frame_ms or arrival
                header, payload = decode_frame(message)
                text = decoder.decode(payload, segment_start=header.segment_start)
                for line in text.split(b"\n"):
                    snapshots = [e for e in orjson.loads(line or b"[]")
                                 if e["type"] == _RRWEB_FULL_SNAPSHOT]
                    if snapshots and out.full_snapshot_ms is None:
                        out.full_snapshot_ms = arrival
                        out.snapshot_taken_ms = snapshots[0]["timestamp"] - t0
                        out.snapshot_ingested_ms = header.ingest_ts - t0
    except TimeoutError:
        out.error = f"no FullSnapshot within {timeout_s:.0f} s"
    except (websockets.ConnectionClosed, OSError, ValueError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    return out


__all__ = ["FirstSnapshot", "Watch", "time_first_snapshot", "watch_run"]
