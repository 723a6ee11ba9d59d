"""Compression of a recorded real-page stream: ratio and speed of each way to do it.

    .venv/bin/python -m bench.compression [--quick] [--reuse] [--windows 25,50,100]
                                          [--no-js] [--out FILE]

1. Record (skipped with `--reuse` when the files exist): two real sessions, without
   Ray, through pipeline.session.BrowserSession with a sink that keeps every PageBatch
   the page flushed (default Settings: 25 ms batching, a checkout every 5 s):
   - `demo`: the bundled demo workflow (pipeline.demo_workflow on pipeline.demo_site,
     about 25 s: clicks in a cross-origin iframe, a form typed into, a list grown, a
     long page scrolled, four navigations);
   - `busy`: bench/busy_page.html, a live dashboard that changes a few nodes 20 times
     a second, for `--busy-seconds` (20 s).
   The batches are saved to bench/results/recorded_<name>.jsonl, one JSON object per
   batch: the page's checkout flag, event count, first/last event timestamps and the
   batch text (a JSON array of rrweb events, each with its own timestamp).
2. Re-batch every recording as the page would at 25, 50 and 100 ms windows: a batch
   starts at an event and takes every event whose timestamp is less than the window
   later; a Meta event (type 4) always starts a new batch, which ends after its
   FullSnapshot, so snapshot batches hold the checkout and nothing else (the page
   itself lets a checkout batch gather incremental events for the rest of its window;
   the `page` rows keep the batches as recorded). Each batch is its JSON text plus
   "\\n", the bytes the streamer compresses.
3. Compress each stream, in order, with a fresh context per segment where the scheme has
   one:
   - `lz4 per batch`: lz4.block.compress of each batch alone (with its 4-byte size);
   - `lz4-frame linked`: pipeline.codec.Lz4FrameEncoder (the `lz4-frame` codec);
   - `deflate-raw L1` / `L6`: pipeline.codec.DeflateRawEncoder at zlib level 1 and 6
     (the `deflate-raw` codec is level 6), a sync flush after every batch;
   and decode it back with the matching decoder (checking the bytes). Ratios are raw
   bytes / compressed bytes, on incremental batches only (`incr`), on snapshot batches
   (`snap`), and on the incremental stream with each batch paying the 61-byte frame
   header of protocol v1 (`incr+hdr`, a frame per batch: what a single live viewer
   gets). A reference line gives the incremental batches alone (no snapshot in the
   context) deflated at level 9 in one go, with no flushes.
   Speed: MB/s (10^6 bytes of raw input per second) to compress and to decompress,
   each timed per batch as the streamer and viewers call it, the fastest of 3 passes.
   Python's decoders are the reference client's, not the browser's: with node on PATH
   the viewer's own decoders (frontend/src/viewer/lz4.js, inflate.js) also decode
   each `lz4-frame` and `deflate-raw L6` stream in V8 (`JS dec MB/s`, bench/js_decode.mjs).

The whole run holds the machine-wide benchmark lock (bench/lock.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lz4.block
import orjson

from bench.lock import bench_lock
from bench.procs import ChromiumWatch, machine_info
from bench.stack import reap
from bench.stress_server import StressServer
from bench.tables import publish, table
from pipeline.codec import (
    DeflateRawDecoder,
    DeflateRawEncoder,
    Lz4FrameDecoder,
    Lz4FrameEncoder,
)
from pipeline.config import Settings
from pipeline.protocol import PageBatch

RESULTS = Path(__file__).parent / "results"
DEFAULT_OUT = RESULTS / "compression.json"
FULL = {"windows": [25, 50, 100], "busy_seconds": 20.0, "passes": 3}
QUICK = {"windows": [25, 100], "busy_seconds": 8.0, "passes": 2}
TARGET_INCR_RATIO = 4.0
FRAME_HEADER_BYTES = 49 + 12  # protocol v1 header + a 12-character session id
_META, _FULL_SNAPSHOT = 4, 2
_JS_DECODE = Path(__file__).parent / "js_decode.mjs"


# -- recording -------------------------------------------------------------------------------

class _Collect:
    """A BatchSink that keeps every batch."""

    def __init__(self) -> None:
        self.batches: list[PageBatch] = []

    async def push(self, batches: list[PageBatch]) -> int:
        self.batches.extend(batches)
        return len(self.batches)

    async def close(self) -> None:
        return None


async def _record(spec: Any, settings: Settings, *, until_idle: bool, seconds: float,
                  chromium: ChromiumWatch, name: str) -> list[PageBatch]:
    from pipeline.models import SessionState
    from pipeline.session import BrowserSession

    sink = _Collect()
    session = BrowserSession(f"bench-{name}", settings, sink)
    try:
        status = await session.start(spec)
        chromium.scan()
        if status.state is not SessionState.RUNNING:
            raise RuntimeError(f"{name}: session did not start: {status.error}")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            chromium.scan()
            if until_idle and session.status().state is not SessionState.RUNNING:
                break
        status = session.status()
        if until_idle and status.state is not SessionState.IDLE:
            raise RuntimeError(f"{name}: workflow did not finish: {status.state} {status.error}")
        if status.error:
            raise RuntimeError(f"{name}: {status.error}")
    finally:
        await session.stop()
    return sink.batches


def record_all(busy_seconds: float) -> dict[str, list[PageBatch]]:
    from pipeline.models import SessionSpec

    settings = Settings()
    chromium = ChromiumWatch()
    out: dict[str, list[PageBatch]] = {}
    try:
        print("[compression] recording the demo workflow …", file=sys.stderr, flush=True)
        out["demo"] = asyncio.run(_record(SessionSpec(demo=True, name="demo"), settings,
                                          until_idle=True, seconds=120, chromium=chromium,
                                          name="demo"))
        with StressServer() as site:
            print(f"[compression] recording the busy page for {busy_seconds:g} s …",
                  file=sys.stderr, flush=True)
            out["busy"] = asyncio.run(_record(
                SessionSpec(url=f"{site.url}/busy.html", name="busy"), settings,
                until_idle=False, seconds=busy_seconds, chromium=chromium, name="busy"))
    finally:
        reap(chromium)
    return out


def save(batches: list[PageBatch], path: Path) -> None:
    with path.open("wb") as f:
        for b in batches:
            f.write(orjson.dumps({"checkout": b.checkout, "event_count": b.event_count,
                                  "first_ts": b.first_ts, "last_ts": b.last_ts,
                                  "text": b.text}) + b"\n")


def load(path: Path) -> list[PageBatch]:
    out = []
    for line in path.read_bytes().splitlines():
        d = orjson.loads(line)
        out.append(PageBatch(d["checkout"], d["event_count"], d["first_ts"], d["last_ts"],
                             d["text"]))
    return out


# -- re-batching -----------------------------------------------------------------------------

@dataclass(slots=True)
class Batch:
    data: bytes  # JSON array text + "\n", as the streamer compresses it
    checkout: bool
    events: int


def page_batches(batches: list[PageBatch]) -> list[Batch]:
    return [Batch(b.text.encode() + b"\n", b.checkout, b.event_count) for b in batches]


def rebatch(batches: list[PageBatch], window_ms: float, max_chars: int) -> list[Batch]:
    """The recording's events in batches of `window_ms` by event timestamp; a Meta event
    starts a checkout batch that ends after its FullSnapshot."""
    out: list[Batch] = []
    parts: list[bytes] = []
    start_ts = 0.0
    checkout = False
    has_snapshot = False
    size = 0

    def close() -> None:
        nonlocal parts, size
        if parts:
            out.append(Batch(b"[" + b",".join(parts) + b"]\n", checkout, len(parts)))
        parts, size = [], 0

    for b in batches:
        for event in orjson.loads(b.text):
            text = orjson.dumps(event)
            kind, ts = event.get("type"), float(event.get("timestamp", 0))
            if kind == _META:
                close()
                checkout, has_snapshot, start_ts = True, False, ts
            elif checkout and not has_snapshot:
                pass  # the checkout's FullSnapshot, however long it took, joins its Meta
            elif checkout or not parts or ts - start_ts >= window_ms or size >= max_chars:
                close()
                checkout, start_ts = False, ts
            parts.append(text)
            size += len(text)
            if kind == _FULL_SNAPSHOT:
                has_snapshot = True
    close()
    return out


# -- schemes ---------------------------------------------------------------------------------

Encode = Callable[[bytes, bool], bytes]
Decode = Callable[[bytes, bool], bytes]


def _lz4_alone() -> tuple[Encode, Decode]:
    return (lambda data, start: lz4.block.compress(data, store_size=True),
            lambda payload, start: lz4.block.decompress(payload))


def _lz4_frame() -> tuple[Encode, Decode]:
    enc, dec = Lz4FrameEncoder(), Lz4FrameDecoder()
    return (lambda data, start: enc.encode(data, segment_start=start),
            lambda payload, start: dec.decode(payload, segment_start=start))


def _deflate(level: int) -> Callable[[], tuple[Encode, Decode]]:
    def make() -> tuple[Encode, Decode]:
        enc, dec = DeflateRawEncoder(level), DeflateRawDecoder()
        return (lambda data, start: enc.encode(data, segment_start=start),
                lambda payload, start: dec.decode(payload, segment_start=start))
    return make


SCHEMES: dict[str, tuple[Callable[[], tuple[Encode, Decode]], str | None]] = {
    # name: (factory, codec name for the JS decoder or None)
    "lz4 per batch": (_lz4_alone, None),
    "lz4-frame linked": (_lz4_frame, "lz4-frame"),
    "deflate-raw L1": (_deflate(1), None),
    "deflate-raw L6": (_deflate(6), "deflate-raw"),
}


def measure(stream: list[Batch], factory: Callable[[], tuple[Encode, Decode]],
            passes: int) -> tuple[dict[str, Any], list[bytes]]:
    starts = [b.checkout or i == 0 for i, b in enumerate(stream)]
    payloads: list[bytes] = []
    best_c = {True: float("inf"), False: float("inf")}
    best_d = {True: float("inf"), False: float("inf")}
    clock = time.perf_counter
    for attempt in range(passes):
        encode, _ = factory()
        spent = {True: 0.0, False: 0.0}
        out = []
        for batch, start in zip(stream, starts, strict=True):
            t0 = clock()
            payload = encode(batch.data, start)
            spent[batch.checkout] += clock() - t0
            out.append(payload)
        if attempt == 0:
            payloads = out
        for k in spent:
            best_c[k] = min(best_c[k], spent[k])
    for attempt in range(passes):
        _, decode = factory()
        spent = {True: 0.0, False: 0.0}
        for batch, start, payload in zip(stream, starts, payloads, strict=True):
            t0 = clock()
            data = decode(payload, start)
            spent[batch.checkout] += clock() - t0
            if attempt == 0 and data != batch.data:
                raise AssertionError("round trip changed the data")
        for k in spent:
            best_d[k] = min(best_d[k], spent[k])

    def part(checkout: bool) -> dict[str, Any]:
        raw = sum(len(b.data) for b in stream if b.checkout is checkout)
        comp = sum(len(p) for b, p in zip(stream, payloads, strict=True)
                   if b.checkout is checkout)
        n = sum(1 for b in stream if b.checkout is checkout)
        return {"batches": n, "raw_bytes": raw, "compressed_bytes": comp,
                "ratio": round(raw / comp, 2) if comp else None,
                "ratio_with_frame_header": (round(raw / (comp + FRAME_HEADER_BYTES * n), 2)
                                            if comp else None),
                "compress_mb_s": (round(raw / best_c[checkout] / 1e6, 1)
                                  if best_c[checkout] > 0 and raw else None),
                "decompress_mb_s": (round(raw / best_d[checkout] / 1e6, 1)
                                    if best_d[checkout] > 0 and raw else None),
                "compress_us_per_batch": (round(best_c[checkout] / n * 1e6, 1) if n else None),
                "decompress_us_per_batch": (round(best_d[checkout] / n * 1e6, 1)
                                            if n else None)}

    raw_all = sum(len(b.data) for b in stream)
    comp_all = sum(len(p) for p in payloads)
    c_all, d_all = sum(best_c.values()), sum(best_d.values())
    return {"incremental": part(False), "snapshots": part(True),
            "all": {"ratio": round(raw_all / comp_all, 2),
                    "compress_mb_s": round(raw_all / c_all / 1e6, 1) if c_all else None,
                    "decompress_mb_s": round(raw_all / d_all / 1e6, 1) if d_all else None}}, \
        payloads


def js_decode(codec: str, stream: list[Batch], payloads: list[bytes],
              passes: int) -> dict[str, Any] | None:
    node = shutil.which("node")
    if node is None:
        return None
    starts = [b.checkout or i == 0 for i, b in enumerate(stream)]
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        for start, payload in zip(starts, payloads, strict=True):
            f.write(struct.pack("<BII", 1 if start else 0, 1, len(payload)) + payload)
        f.flush()
        done = subprocess.run([node, str(_JS_DECODE), codec, f.name, str(max(passes, 5))],
                              capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["node failed"]}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    raw = sum(len(b.data) for b in stream)
    if out["bytes_out"] != raw:
        return {"error": f"decoded {out['bytes_out']} bytes, expected {raw}"}
    out["decompress_mb_s"] = round(raw / out["best_s"] / 1e6, 1) if out["best_s"] else None
    out["us_per_payload"] = round(out["best_s"] / len(payloads) * 1e6, 1)
    return out


def bound(stream: list[Batch]) -> dict[str, float | None]:
    """The incremental batches alone deflated at once (level 9, no flushes, and no snapshot
    in the context, so a segment codec can beat it)."""
    incr = b"".join(b.data for b in stream if not b.checkout)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    size = len(comp.compress(incr) + comp.flush())
    return {"incremental_one_shot_deflate9_ratio": round(len(incr) / size, 2) if size else None}


def describe(stream: list[Batch]) -> dict[str, Any]:
    incr = [b for b in stream if not b.checkout]
    return {"batches": len(stream), "incremental_batches": len(incr),
            "snapshot_batches": len(stream) - len(incr),
            "events": sum(b.events for b in stream),
            "incremental_events_per_batch": (round(sum(b.events for b in incr) / len(incr), 1)
                                             if incr else None),
            "incremental_bytes_per_batch": (round(sum(len(b.data) for b in incr) / len(incr))
                                            if incr else None),
            "raw_bytes": sum(len(b.data) for b in stream)}


def analyse(name: str, batches: list[PageBatch], windows: list[int], passes: int,
            use_js: bool) -> dict[str, Any]:
    max_chars = Settings().max_batch_chars
    streams = {"page": page_batches(batches),
               **{f"{w} ms": rebatch(batches, w, max_chars) for w in windows}}
    span_s = (batches[-1].last_ts - batches[0].first_ts) / 1000.0 if batches else 0.0
    out: dict[str, Any] = {"recording": name, "page_batches": len(batches),
                           "duration_s": round(span_s, 1),
                           "checkouts": sum(1 for b in batches if b.checkout), "streams": {}}
    for label, stream in streams.items():
        print(f"[compression] {name}, {label} …", file=sys.stderr, flush=True)
        row: dict[str, Any] = {"stream": describe(stream), **bound(stream), "schemes": {}}
        for scheme, (factory, js_codec) in SCHEMES.items():
            result, payloads = measure(stream, factory, passes)
            if use_js and js_codec is not None:
                result["js"] = js_decode(js_codec, stream, payloads, passes)
            row["schemes"][scheme] = result
        out["streams"][label] = row
    return out


# -- report ----------------------------------------------------------------------------------

def report(result: dict[str, Any]) -> str:
    machine = result["machine"]
    out = [f"{machine['cpu_count']} cores, load {machine['load_avg_1m_at_start']} at start; "
           "MB/s = 10^6 raw bytes per second, fastest of "
           f"{result['plan']['passes']} passes; JS = the viewer's decoder in node "
           f"{result.get('node_version') or '(not run)'}"]
    for rec in result["recordings"]:
        out += ["", f"Recording '{rec['recording']}': {rec['duration_s']} s, "
                f"{rec['page_batches']} page batches, {rec['checkouts']} checkouts"]
        rows = []
        for label, row in rec["streams"].items():
            st = row["stream"]
            for scheme, r in row["schemes"].items():
                inc, snap = r["incremental"], r["snapshots"]
                js = r.get("js") or {}
                shape = (f"{st['incremental_batches']}x{st['incremental_events_per_batch']}ev"
                         f"/{st['incremental_bytes_per_batch']}B")
                rows.append([label, shape, scheme, inc["ratio"],
                             inc["ratio_with_frame_header"], snap["ratio"], r["all"]["ratio"],
                             inc["compress_mb_s"], inc["decompress_mb_s"],
                             snap["compress_mb_s"], snap["decompress_mb_s"],
                             inc["compress_us_per_batch"], js.get("decompress_mb_s"),
                             js.get("us_per_payload")])
            rows.append([label, "", "(ref: incr alone, 1 shot)",
                         row["incremental_one_shot_deflate9_ratio"], *[""] * 10])
        out.append(table(["batching", "incr batches", "scheme", "incr", "incr+hdr", "snap",
                          "all", "incr comp MB/s", "incr dec MB/s", "snap comp MB/s",
                          "snap dec MB/s", "incr comp us/batch", "JS dec MB/s",
                          "JS dec us/batch"], rows))
    out += ["", f"Target: >= {TARGET_INCR_RATIO:g}x on the incremental stream at 25-100 ms "
            "batches (ratio 'incr', compressed payload only)"]
    for rec in result["recordings"]:
        for label, row in rec["streams"].items():
            if label == "page":
                continue
            met = [s for s, r in row["schemes"].items()
                   if (r["incremental"]["ratio"] or 0) >= TARGET_INCR_RATIO]
            out.append(f"  {rec['recording']} {label}: " + (", ".join(met) if met else "none"))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compression", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reuse", action="store_true",
                        help="use bench/results/recorded_*.jsonl if present instead of recording")
    parser.add_argument("--windows", type=lambda v: [int(x) for x in v.split(",")])
    parser.add_argument("--busy-seconds", type=float)
    parser.add_argument("--no-js", dest="js", action="store_false",
                        help="skip the viewer's JS decoders (node)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    if args.windows:
        plan["windows"] = args.windows
    if args.busy_seconds:
        plan["busy_seconds"] = args.busy_seconds
    out_path = args.out or DEFAULT_OUT.with_name(f"compression{'_quick' * args.quick}.json")
    RESULTS.mkdir(parents=True, exist_ok=True)
    files = {name: RESULTS / f"recorded_{name}.jsonl" for name in ("demo", "busy")}
    result: dict[str, Any] = {"benchmark": "compression", "quick": args.quick, "plan": plan}
    with bench_lock("bench.compression"):
        result["machine"] = machine_info()
        result["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
        if args.reuse and all(f.exists() for f in files.values()):
            recordings = {name: load(path) for name, path in files.items()}
            result["recorded"] = "reused"
        else:
            recordings = record_all(plan["busy_seconds"])
            for name, batches in recordings.items():
                save(batches, files[name])
            result["recorded"] = "now"
        result["files"] = {name: str(path) for name, path in files.items()}
        node = shutil.which("node") if args.js else None
        result["node_version"] = (subprocess.run([node, "--version"], capture_output=True,
                                                 text=True, check=False).stdout.strip()
                                  if node else None)
        result["recordings"] = [analyse(name, batches, plan["windows"], plan["passes"],
                                        node is not None)
                                for name, batches in recordings.items()]
    publish(report(result), result, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
