"""Many viewers of one session in one process, doing as little as possible per message.

    python -m bench.viewer_swarm --url ws://127.0.0.1:PORT/sessions/ID/stream --viewers 100

bench/fanout.py starts this as a subprocess, so the swarm's CPU is not the
benchmark driver's and shows up as its own process. Every viewer speaks protocol v1
(docs/protocol.md): `hello` with `acks: true`, then it reads binary frames. Per frame
it reads the header only (first/last seq, event count, first_ts/last_ts) and notes the
arrival wall time the moment `recv()` hands the frame over. One viewer in `--decode-every`
(always viewer 0) also decodes every frame with the codec `welcome` names and reads
the stress page's bench events out of it (bench/stress_watch.py's patterns), so
content and per-event latency are checked on a sample. Decoding needs every frame of
a segment, so the sample is whole viewers, not frames.

This is a fast path beside the project's client (serve/client), not a second client: it
opens sockets, says `hello`, acks and reads control messages and frame headers with the
client's own functions, and the sampled viewers decode with its StreamDecoder. What it
leaves out is per-frame work for 500 viewers in one process: no Frame objects, no
reconnects (a lost viewer is an error in the results).

Acks: each viewer acknowledges what it received at most every `ACK_EVERY_S` (500 ms), as
the protocol asks: on a frame if the last ack is that old, and from a sweep every
500 ms for a viewer whose frames stopped (so the server's window never closes on a
viewer that simply had nothing new).

The WebSocket client offers permessage-deflate unless `--no-ws-deflate`, as browsers
do, so the server pays whatever it negotiates for each viewer.

Control, one JSON object per line: the swarm writes `{"event": "attached", ...}` to
stdout once every viewer has its `welcome` and first binary frame (or gave up), and
reads commands on stdin: `{"cmd": "window", "start": T0, "end": T1}` (wall-clock seconds;
statistics cover frames that arrived in it) and `{"cmd": "stop"}`, after which it closes
every socket and writes `{"event": "result", ...}`. End of stdin counts as stop;
`--max-seconds` bounds the whole run.

Python's garbage collector is off from the moment every viewer is attached: its full
collections, over the samples this process keeps, took 40-90 ms every 4-5 s at 100
viewers, and each one showed up as a latency spike of the whole swarm (a browser's
collector runs incrementally). The run is bounded, and what it keeps is kept anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import resource
import statistics
import sys
import time
from array import array
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from bench.stress_watch import BENCH_DONE, BENCH_EVENT
from pipeline.protocol import End, Error, Reset, Status, Welcome, decode_frame
from serve.client import (
    BadFrame,
    SequenceGap,
    SocketOptions,
    StreamDecoder,
    ack,
    hello,
    open_socket,
    parse_control,
)

ACK_EVERY_S = 0.5


class SwarmViewer:
    """One viewer's socket and what it saw; frames are kept as parallel arrays."""

    __slots__ = ("index", "decode", "ws", "decoder", "last_seq", "acked_seq", "last_ack",
                 "welcome", "first_frame", "arrival", "first_ts", "last_ts", "ingest_ts", "events",
                 "batches", "nbytes", "gaps", "resets", "reset_messages", "error", "closed",
                 "bench", "bench_dupes", "bench_bad", "done", "acks_sent", "status_seen")

    def __init__(self, index: int, decode: bool) -> None:
        self.index = index
        self.decode = decode
        self.ws: ClientConnection | None = None
        self.decoder: StreamDecoder | None = None
        self.last_seq: int | None = None
        self.acked_seq = -1
        self.last_ack = 0.0
        self.welcome: Welcome | None = None
        self.first_frame: float | None = None
        self.arrival = array("d")
        self.first_ts = array("d")
        self.last_ts = array("d")
        self.ingest_ts = array("d")
        self.events = array("l")
        self.batches = array("l")
        self.nbytes = 0
        self.gaps = 0  # a jump in sequence numbers without RESET
        self.resets = 0  # RESET frames after the first frame
        self.reset_messages: list[str] = []  # reasons of `reset` messages after the first
        self.error: str | None = None
        self.closed: str | None = None
        # decoded viewers: bench index -> (arrival wall s, latency ms)
        self.bench: dict[int, tuple[float, float]] = {}
        self.bench_dupes = 0
        self.bench_bad = 0  # a frame whose text did not match its header, or a missed pattern
        self.done: dict[str, Any] | None = None
        self.acks_sent = 0
        self.status_seen = 0


async def _ack(viewer: SwarmViewer, now: float) -> None:
    if viewer.ws is None or viewer.last_seq is None or viewer.last_seq <= viewer.acked_seq:
        return
    seq = viewer.last_seq
    viewer.acked_seq, viewer.last_ack = seq, now
    viewer.acks_sent += 1
    await viewer.ws.send(ack(seq))


def _on_frame(viewer: SwarmViewer, message: bytes, arrival: float) -> None:
    header, _ = decode_frame(message)
    if viewer.last_seq is not None:
        if header.reset:
            viewer.resets += 1
        elif header.first_seq != viewer.last_seq + 1:
            viewer.gaps += 1
    viewer.last_seq = header.last_seq
    viewer.arrival.append(arrival)
    viewer.first_ts.append(header.first_ts)
    viewer.last_ts.append(header.last_ts)
    viewer.ingest_ts.append(header.ingest_ts)
    viewer.events.append(header.event_count)
    viewer.batches.append(header.last_seq - header.first_seq + 1)
    viewer.nbytes += len(message)
    if viewer.decoder is not None:
        _decode(viewer, viewer.decoder, message, arrival)


def _decode(viewer: SwarmViewer, decoder: StreamDecoder, message: bytes, arrival: float) -> None:
    """The sampled viewers read the bench events out of every frame they can decode; after a
    gap (counted above) nothing decodes until the next RESET frame, and what is missed
    counts as lost."""
    try:
        text = decoder.read(message, arrival * 1000.0).text or b""
    except SequenceGap:
        decoder.reset()
        return
    except BadFrame:  # its lines do not match its header, or it does not decode
        viewer.bench_bad += 1
        decoder.reset()
        return
    matches = list(BENCH_EVENT.finditer(text))
    if len(matches) != text.count(b'"tag":"bench",'):
        viewer.bench_bad += 1
    arrival_ms = arrival * 1000.0
    for match in matches:
        index = int(match[1])
        if index in viewer.bench:
            viewer.bench_dupes += 1
        else:
            viewer.bench[index] = (arrival, arrival_ms - float(match[2]))
    done = BENCH_DONE.search(text)
    if done is not None:
        viewer.done = orjson.loads(done[1])


async def _run_viewer(viewer: SwarmViewer, url: str, ws_deflate: bool,
                      attached: asyncio.Event, counter: list[int], total: int,
                      gate: asyncio.Semaphore, token: str | None) -> None:
    options = SocketOptions(compression="deflate" if ws_deflate else None, open_timeout_s=30,
                            ping_interval_s=None)
    try:
        async with gate:
            ws = await open_socket(url, options)
        viewer.ws = ws
        async with ws:
            await ws.send(hello(None, acks=True, token=token))
            while True:
                message = await ws.recv()
                arrival = time.time()
                if isinstance(message, bytes):
                    if viewer.first_frame is None:
                        viewer.first_frame = arrival
                        counter[0] += 1
                        if counter[0] >= total:
                            attached.set()
                    _on_frame(viewer, message, arrival)
                    if arrival - viewer.last_ack >= ACK_EVERY_S:
                        await _ack(viewer, arrival)
                    continue
                control = parse_control(message)
                if isinstance(control, Welcome):
                    viewer.welcome = control
                    if viewer.decode:
                        viewer.decoder = StreamDecoder(control.codec)
                elif isinstance(control, Status):
                    viewer.status_seen += 1
                elif isinstance(control, Reset) and viewer.first_frame is not None:
                    viewer.reset_messages.append(control.reason)
                elif isinstance(control, End):
                    viewer.closed = f"end: {control.reason}"
                elif isinstance(control, Error):
                    viewer.closed = f"error: {control.message}"
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a closed socket, a refused connect: note it, never raise
        viewer.error = f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        viewer.ws = None
        if viewer.first_frame is None:
            counter[0] += 1  # gave up: do not keep the others waiting for it
            if counter[0] >= total:
                attached.set()


async def _sweep_acks(viewers: list[SwarmViewer]) -> None:
    while True:
        await asyncio.sleep(ACK_EVERY_S)
        now = time.time()
        for viewer in viewers:
            if now - viewer.last_ack >= ACK_EVERY_S:
                with contextlib.suppress(Exception):
                    await _ack(viewer, now)


async def _loop_lag(samples: array, at: array) -> None:
    """How late this process's event loop wakes up (`samples`, ms, woken at wall time `at`):
    the swarm's own delay in the figures."""
    period = 0.05
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(period)
        samples.append((time.perf_counter() - t0 - period) * 1000.0)
        at.append(time.time())


def _pct(values: list[float] | array, q: float) -> float | None:
    if not len(values):
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 1)


def summarize(viewers: list[SwarmViewer], start: float, end: float,
              lag_ms: array, lag_at: array) -> dict[str, Any]:
    """Statistics over frames that arrived in [start, end] (wall seconds)."""
    lag = [ms for ms, at in zip(lag_ms, lag_at, strict=True) if start <= at <= end]
    span = max(end - start, 1e-9)
    newest: list[float] = []  # arrival - last_ts: the frame's freshest event
    oldest: list[float] = []  # arrival - first_ts: the frame's oldest event
    served: list[float] = []  # arrival - ingest_ts: streamer -> gateway -> ingress -> here
    per_viewer_events: list[float] = []
    seconds: dict[int, list[float]] = {}  # second of the window -> newest-event latencies
    upstream: dict[int, list[float]] = {}  # ... -> ingest_ts - last_ts: page -> streamer
    downstream: dict[int, list[float]] = {}  # ... -> arrival - ingest_ts: streamer -> here
    per_viewer_frames: list[float] = []
    frames = events = batches = 0
    for v in viewers:
        n_events = n_frames = 0
        for i, arrival in enumerate(v.arrival):
            if start <= arrival <= end:
                ms = arrival * 1000.0
                newest.append(ms - v.last_ts[i])
                second = int(arrival - start)
                seconds.setdefault(second, []).append(ms - v.last_ts[i])
                upstream.setdefault(second, []).append(v.ingest_ts[i] - v.last_ts[i])
                downstream.setdefault(second, []).append(ms - v.ingest_ts[i])
                oldest.append(ms - v.first_ts[i])
                served.append(ms - v.ingest_ts[i])
                n_frames += 1
                n_events += v.events[i]
                batches += v.batches[i]
        frames += n_frames
        events += n_events
        per_viewer_events.append(n_events / span)
        per_viewer_frames.append(n_frames / span)
    sampled = [v for v in viewers if v.decode]
    event_lat = [lat for v in sampled for arrival, lat in v.bench.values()
                 if start <= arrival <= end]
    sample_rows = []
    for v in sampled:
        sent = int(v.done.get("sent", 0)) if v.done else None
        lost = (sum(1 for i in range(sent) if i not in v.bench) if sent is not None else None)
        sample_rows.append({"viewer": v.index, "bench_received": len(v.bench), "page_sent": sent,
                            "lost": lost, "duplicates": v.bench_dupes, "bad_frames": v.bench_bad,
                            "saw_done": v.done is not None})
    attach = [v.first_frame for v in viewers if v.first_frame is not None]
    return {
        "viewers": len(viewers),
        "attached": len(attach),
        "errors": sorted({v.error for v in viewers if v.error}),
        "viewers_with_error": sum(1 for v in viewers if v.error),
        "window_s": round(span, 3),
        "frames": frames,
        "frames_per_s": round(frames / span, 1),
        "events_per_frame": round(events / frames, 2) if frames else None,
        "batches_per_frame": round(batches / frames, 2) if frames else None,
        "events_per_s_per_viewer": {
            "median": round(statistics.median(per_viewer_events), 1) if viewers else None,
            "min": round(min(per_viewer_events), 1) if viewers else None,
            "max": round(max(per_viewer_events), 1) if viewers else None},
        "frames_per_s_per_viewer_median": (round(statistics.median(per_viewer_frames), 1)
                                           if viewers else None),
        "latency_frame_newest_ms": {"p50": _pct(newest, 0.5), "p99": _pct(newest, 0.99),
                                    "max": round(max(newest), 1) if newest else None,
                                    "samples": len(newest)},
        "latency_frame_oldest_ms": {"p50": _pct(oldest, 0.5), "p99": _pct(oldest, 0.99),
                                    "max": round(max(oldest), 1) if oldest else None},
        "latency_ingest_to_viewer_ms": {"p50": _pct(served, 0.5), "p99": _pct(served, 0.99)},
        "latency_event_sampled_ms": {"p50": _pct(event_lat, 0.5), "p99": _pct(event_lat, 0.99),
                                     "max": round(max(event_lat), 1) if event_lat else None,
                                     "samples": len(event_lat),
                                     "viewers": len(sampled)},
        "gaps": sum(v.gaps for v in viewers),
        "resets": sum(v.resets for v in viewers),
        "viewers_reset": sum(1 for v in viewers if v.resets),
        "reset_reasons": sorted({r for v in viewers for r in v.reset_messages}),
        "sampled": sample_rows,
        "lost_sampled": sum(r["lost"] or 0 for r in sample_rows),
        "bytes_received": sum(v.nbytes for v in viewers),
        "acks_sent": sum(v.acks_sent for v in viewers),
        "closed": sorted({v.closed for v in viewers if v.closed}),
        "loop_lag_ms": {"p50": _pct(lag, 0.5), "p99": _pct(lag, 0.99),
                        "max": round(max(lag), 1) if lag else None},
        "attach_spread_s": round(max(attach) - min(attach), 2) if attach else None,
        "per_viewer_events_per_s": [round(x, 1) for x in per_viewer_events],
        # One row per second of the window: a stall shows up as one bad second.
        # Its p99 split: page -> streamer ingest, and streamer -> this socket.
        "timeline": [{"second": k, "frames": len(v), "p50": _pct(v, 0.5), "p99": _pct(v, 0.99),
                      "max": round(max(v), 1), "page_to_ingest_p99": _pct(upstream[k], 0.99),
                      "ingest_to_viewer_p99": _pct(downstream[k], 0.99)}
                     for k, v in sorted(seconds.items())],
    }


async def _commands(queue: asyncio.Queue[dict[str, Any]]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            await queue.put({"cmd": "stop", "why": "stdin closed"})
            return
        with contextlib.suppress(ValueError):
            await queue.put(json.loads(line))


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    viewers = [SwarmViewer(i, i % args.decode_every == 0) for i in range(args.viewers)]
    attached = asyncio.Event()
    counter = [0]
    gate = asyncio.Semaphore(args.connect_concurrency)
    lag_ms, lag_at = array("d"), array("d")
    t0 = time.time()
    tasks = [asyncio.create_task(_run_viewer(v, args.url, args.ws_deflate, attached, counter,
                                             len(viewers), gate, args.token)) for v in viewers]
    helpers = [asyncio.create_task(_sweep_acks(viewers)),
               asyncio.create_task(_loop_lag(lag_ms, lag_at))]
    commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    helpers.append(asyncio.create_task(_commands(commands)))
    window = (t0, t0 + args.max_seconds)
    try:
        async with asyncio.timeout(args.max_seconds):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(attached.wait(), args.attach_timeout)
            ok = sum(1 for v in viewers if v.first_frame is not None)
            gc.collect()
            gc.disable()  # see the module's docstring
            _emit({"event": "attached", "viewers": len(viewers), "attached": ok,
                   "seconds": round(time.time() - t0, 2),
                   "errors": sorted({v.error for v in viewers if v.error})[:5]})
            while True:
                command = await commands.get()
                if command.get("cmd") == "window":
                    window = (float(command["start"]), float(command["end"]))
                elif command.get("cmd") == "stop":
                    break
    except TimeoutError:
        print(f"[swarm] stopped after --max-seconds {args.max_seconds:g}", file=sys.stderr)
    finally:
        for task in helpers:
            task.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *helpers, return_exceptions=True)
    gc.enable()
    _emit({"event": "result", **summarize(viewers, window[0], window[1], lag_ms, lag_at)})


def _raise_fd_limit(viewers: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = viewers * 2 + 256
    if soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < want:
            print(f"[swarm] fd limit {target} < {want}: some viewers may fail to connect",
                  file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.viewer_swarm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--viewers", type=int, required=True)
    parser.add_argument("--decode-every", type=int, default=0,
                        help="decode one viewer in this many (default: about 10 decoders)")
    parser.add_argument("--connect-concurrency", type=int, default=32)
    parser.add_argument("--attach-timeout", type=float, default=90.0)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--token", help="the viewer token every viewer's hello carries")
    parser.add_argument("--no-ws-deflate", dest="ws_deflate", action="store_false",
                        help="do not offer permessage-deflate (browsers do)")
    args = parser.parse_args(argv)
    if args.decode_every <= 0:
        args.decode_every = max(1, args.viewers // 10)
    _raise_fd_limit(args.viewers)
    try:
        import uvloop

        uvloop.run(run(args))
    except ImportError:
        asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
