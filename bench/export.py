"""Export speed: the demo workflow's recording exported to WebM, as a multiple of real time.

    .venv/bin/python -m bench.export [--quick] [--runs 3] [--fps 10] [--width 1280]
                                     [--height 800] [--out bench/results/export.json]

It starts the real stack (bench/stack.py: embedded Ray on loopback, the Serve gateway on
a free port), records the built-in demo workflow once (`POST /sessions` with `demo` and
`close_when_done`, so no live session runs while it measures), then exports that
recording `--runs` times (quick: once) through the public API, one after another, and
one PNG. Per export:

| column | meaning |
| --- | --- |
| span s | the recording's length: its first event to its last |
| frames | frames of the video (`span × fps`, rounded up) |
| captured | frames that needed a screenshot; the rest repeat the one before |
| wall s | from `POST /recordings/{id}/exports` to the job seen `done` by polling every 0.1 s: what a user waits (a Ray worker of its own, Chromium, the replay, ffmpeg) |
| task s | the job's `started_at` (the task's first report) to `finished_at` |
| x real time | span / wall s: the issue's target is ≥ 4 |

The whole run holds the benchmark lock (bench/lock.py). One run on a shared 2-core
machine; nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.lock import bench_lock
from bench.procs import machine_info
from bench.stack import RunningStack, bench_settings, bench_stack, until_routed_to_us
from bench.tables import publish, table
from serve.client import Client, stored_frames

TARGET_X = 4.0
DEFAULT_OUT = Path(__file__).parent / "results" / "export.json"


async def record_demo(client: Client) -> tuple[str, float]:
    """The demo workflow, recorded to its end: its id and span in seconds."""
    sid = (await client.start_demo(close_when_done=True, idle_timeout_s=0))["id"]
    await client.wait_for_state(sid, {"stopped", "failed"}, timeout_s=180)
    deadline = time.monotonic() + 180
    while (info := await client.recording(sid))["ended_at"] is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the demo's recording never finished: {info}")
        await asyncio.sleep(0.5)
    stamps = [e["timestamp"] for f in stored_frames(await client.recording_frames(sid),
                                                    info["codec"]) for e in f.events]
    return sid, (max(stamps) - min(stamps)) / 1000


async def one_export(client: Client, sid: str, span_s: float, **options: Any) -> dict[str, Any]:
    began = time.monotonic()
    job = await client.create_export(sid, **options)
    done = await client.wait_for_export(sid, job["id"], timeout_s=600, poll_s=0.1)
    wall = time.monotonic() - began
    task = done["finished_at"] - done["started_at"]
    return {"format": done["request"]["format"], "span_s": round(span_s, 2),
            "frames": done["frames"], "captured": done["captured"],
            "wall_s": round(wall, 2), "task_s": round(task, 2),
            "x_real_time": round(span_s / wall, 2) if done["request"]["format"] == "webm"
            else None, "size_bytes": done["size_bytes"]}


async def run(running: RunningStack, runs: int, video: dict[str, Any]) -> dict[str, Any]:
    async with Client(running.stack.base_url, timeout=60, api_key=running.api_key) as client:
        await until_routed_to_us(client, running.registry,
                                 f"{running.site.url}/simple.html")
        sid, span_s = await record_demo(client)
        rows = [await one_export(client, sid, span_s, **video) for _ in range(runs)]
        rows.append(await one_export(client, sid, span_s, format="png", at_ms=int(span_s * 500),
                                     width=video["width"], height=video["height"]))
    return {"recording": sid, "span_s": span_s, "exports": rows}


def report(result: dict[str, Any]) -> str:
    rows = [[r["format"], r["span_s"], r["frames"], r["captured"], r["wall_s"], r["task_s"],
             r["x_real_time"], f"{r['size_bytes']:,}"] for r in result["exports"]]
    out = [table(["format", "span s", "frames", "captured", "wall s", "task s", "x real time",
                  "bytes"], rows)]
    s = result["summary"]
    out.append(f"\nmedian x real time (webm, {result['plan']['fps']} fps, "
               f"{result['plan']['width']}x{result['plan']['height']}): "
               f"{s['median_x_real_time']} (target >= {TARGET_X:g}: "
               f"{'met' if s['target_met'] else 'NOT met'})")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    video = {"fps": args.fps, "width": args.width, "height": args.height}
    out_path = args.out or DEFAULT_OUT.with_name(f"export{'_quick' * args.quick}.json")
    result: dict[str, Any] = {"benchmark": "export", "quick": args.quick,
                              "plan": {"runs": runs, **video}}
    with bench_lock("bench.export"):
        result["machine"] = machine_info()
        result["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
        settings = bench_settings()
        result["settings"] = settings.model_dump(include={"export_slots", "export_nice",
                                                          "export_cpus", "codec"})
        with bench_stack(settings) as running:
            result.update(asyncio.run(run(running, runs, video)))
        result["chromium_left_running"] = running.leftovers
    speeds = [r["x_real_time"] for r in result["exports"] if r["x_real_time"] is not None]
    median = round(statistics.median(speeds), 2) if speeds else None
    result["summary"] = {"median_x_real_time": median,
                         "target_met": median is not None and median >= TARGET_X}
    publish(report(result), result, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
