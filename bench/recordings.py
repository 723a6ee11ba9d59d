"""Recordings: what a minute of browsing costs in storage, and how fast recordings are read.

    .venv/bin/python -m bench.recordings [--quick] [--store URL] [--listed 1000]
                                         [--out bench/results/recordings.json]

It starts the real stack (bench/stack.py) with its recording store in a temporary
directory (or `--store`, any fsspec URL), then:

1. runs the demo workflow (`{"demo": true, "close_when_done": true}`; full: 3 times,
   quick: once) and reads each recording's metadata: stored bytes (compressed chunks,
   as `bytes_compressed`, and the folder's size on disk), events, chunks and duration,
   so **bytes per minute of browsing**;
2. reads each back through the gateway: `GET /recordings/{id}/events` (the rrweb JSON
   array, streamed chunk by chunk) and `GET /recordings/{id}/frames`, timed, in MB/s;
3. writes `--listed` synthetic recordings (metadata, one small chunk and a search index
   of 200 moments each) into the store beside them and times `GET /recordings` (a page
   of 50, newest first), a filtered one (`?url=…&has_errors=true`), and `GET /search`
   (a text, a URL, a click), 20 calls each: the listing reads every recording's
   metadata from the store, a search lists the indexes' versions and reads only those
   that changed (the first search reads them all: reported apart).

Medians from one run on a shared 2-core machine; nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.lock import bench_lock
from bench.procs import machine_info
from bench.stack import bench_settings, bench_stack
from bench.tables import publish, table
from pipeline.models import RecordingInfo
from pipeline.recording_index import IndexDocument, IndexEntry
from pipeline.recording_store import RecordingStore
from serve.client import Client

DEFAULT_OUT = Path(__file__).parent / "results" / "recordings.json"


async def _demo_recording(client: Client) -> dict[str, Any]:
    info = await client.start_demo(close_when_done=True, idle_timeout_s=0)
    await client.wait_for_state(info["id"], {"stopped", "failed"}, 300)
    for _ in range(200):
        recording = await client.recording(info["id"])
        if recording["ended_at"] is not None:
            return recording
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the recording of {info['id']} did not finish")


async def _timed_get(http: httpx.AsyncClient, path: str) -> tuple[float, int]:
    began = time.perf_counter()
    size = 0
    async with http.stream("GET", path) as response:
        response.raise_for_status()
        async for piece in response.aiter_bytes():
            size += len(piece)
    return time.perf_counter() - began, size


def _synthetic(store: RecordingStore, count: int) -> None:
    now = time.time()
    for i in range(count):
        recording_id = f"synthetic{i:05d}"
        store.write_chunk(recording_id, 0, b"")
        store.write_info(RecordingInfo(
            id=recording_id, codec="deflate-raw", created_at=now - 86_400 + i,
            ended_at=now - 86_000 + i, name=f"synthetic {i}", chunks=1, batches=1, events=1,
            urls=[f"http://site{i % 37}.test/page/{i % 11}"], page_count=1,
            errors=int(i % 10 == 0), first_ts=1.0, last_ts=1000.0))
        entries = [IndexEntry(kind="text", value=f"row {j} of recording {i}", ts=1.0 + j)
                   for j in range(180)]
        entries += [IndexEntry(kind="url", value=f"http://site{i % 37}.test/page/{j}",
                               ts=2.0 + j) for j in range(10)]
        entries += [IndexEntry(kind="click", value=f"#button-{j}", text=f"Button {j}",
                               ts=3.0 + j) for j in range(10)]
        store.write_index(recording_id, IndexDocument(
            id=recording_id, chunks=1, first_ts=1.0, entries=entries).model_dump_json().encode())


async def _listing(http: httpx.AsyncClient, path: str, calls: int) -> list[float]:
    took = []
    for _ in range(calls):
        began = time.perf_counter()
        response = await http.get(path)
        response.raise_for_status()
        took.append((time.perf_counter() - began) * 1000.0)
    return took


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    store_url = args.store or tempfile.mkdtemp(prefix="rrstream-bench-recordings-")
    settings = bench_settings(recordings_url=store_url)
    runs = 1 if args.quick else 3
    with bench_stack(settings) as running:
        headers = {"X-API-Key": running.api_key} if running.api_key else {}
        async with Client(running.stack.base_url, timeout=120, api_key=running.api_key) \
                as client, httpx.AsyncClient(base_url=running.stack.base_url, timeout=120,
                                             headers=headers) as http:
            store = RecordingStore(store_url)
            rows = []
            for _ in range(runs):
                recording = await _demo_recording(client)
                minutes = recording["duration_ms"] / 60_000.0
                on_disk = store.usage().get(recording["id"], 0)
                events_s, events_bytes = await _timed_get(
                    http, f"/recordings/{recording['id']}/events")
                frames_s, frames_bytes = await _timed_get(
                    http, f"/recordings/{recording['id']}/frames")
                rows.append({
                    "id": recording["id"], "duration_s": recording["duration_ms"] / 1000.0,
                    "events": recording["events"], "chunks": recording["chunks"],
                    "bytes_compressed": recording["bytes_compressed"], "bytes_stored": on_disk,
                    "stored_kb_per_min": on_disk / 1024.0 / minutes,
                    "events_json_bytes": events_bytes,
                    "events_mb_per_s": events_bytes / 1e6 / events_s,
                    "frames_mb_per_s": frames_bytes / 1e6 / frames_s,
                    "events_read_ms": events_s * 1000.0})
            await asyncio.to_thread(_synthetic, store, args.listed)
            page = await _listing(http, "/recordings?limit=50", 20)
            filtered = await _listing(http, "/recordings?limit=50&url=site7.test"
                                      "&has_errors=true", 20)
            first_search = await _listing(http, "/search?text=row%2017%20of", 1)
            searches = []
            for query in ("text=row%2017%20of%20recording%2042", "url=site7.test/page/3",
                          "click=Button%207"):
                searches += await _listing(http, f"/search?{query}", 20)
    return {"benchmark": "recordings", "quick": args.quick, "store": store_url,
            "runs": rows, "listed": args.listed,
            "listing_ms": {"median": statistics.median(page), "max": max(page)},
            "filtered_listing_ms": {"median": statistics.median(filtered),
                                    "max": max(filtered)},
            "first_search_ms": first_search[0],
            "search_ms": {"median": statistics.median(searches), "max": max(searches)},
            "machine": machine_info(), "timestamp": datetime.now(UTC).isoformat()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recordings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--store", help="the recording store's URL (default: a temporary "
                        "directory)")
    parser.add_argument("--listed", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out_path = args.out or DEFAULT_OUT.with_name(f"recordings{'_quick' * args.quick}.json")
    with bench_lock("bench.recordings"):
        result = asyncio.run(_run(args))
    text = table(["duration s", "events", "chunks", "stored kB", "kB/min", "events JSON MB",
                  "/events MB/s", "/frames MB/s"],
                 [[f"{r['duration_s']:.1f}", r["events"], r["chunks"],
                   f"{r['bytes_stored'] / 1024:.0f}", f"{r['stored_kb_per_min']:.0f}",
                   f"{r['events_json_bytes'] / 1e6:.2f}", f"{r['events_mb_per_s']:.1f}",
                   f"{r['frames_mb_per_s']:.1f}"] for r in result["runs"]])
    text += (f"\n\nGET /recordings over {result['listed'] + len(result['runs']):,} "
             f"recordings: median {result['listing_ms']['median']:.0f} ms (page of 50), "
             f"{result['filtered_listing_ms']['median']:.0f} ms filtered by url and "
             f"has_errors\nGET /search over them: median {result['search_ms']['median']:.0f} "
             f"ms (a text, a URL, a click; 60 calls), the first {result['first_search_ms']:.0f}"
             " ms (it reads every index)")
    publish(text, result, out_path)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    sys.exit(main())
