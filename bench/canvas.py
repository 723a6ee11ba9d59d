"""What recording an animating canvas costs a viewer: bytes a second and latency.

    .venv/bin/python -m bench.canvas [--fps 0,2,5] [--rate 500] [--seconds 20] [--auth]
                                     [--out FILE]

For each canvas rate F in `--fps` (Settings.canvas_fps, `RRSTREAM_CANVAS_FPS`) it starts
the real stack (bench/stack.py) and runs bench.pipeline's stress run on the stress page
with `canvas=1`: a 640 x 400 canvas that changes on every animation frame, beside
`--rate` bench events a second (their page time `t` gives the latency, as in
bench.latency). One viewer decodes every frame. Per F: bytes a second to the viewer
(compressed frames, as sent), the canvas pictures' bytes a second the session counted
(before compression), and the page -> viewer latency p50 / p99 of the bench events,
against the 60 ms p99 target. Medians from one run on a shared machine; nothing asserts
on time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.lock import bench_lock
from bench.pipeline import stress_run
from bench.procs import machine_info
from bench.stack import RunningStack, bench_settings, bench_stack, until_routed_to_us
from bench.tables import publish, table
from serve.client import Client

TARGET_P99_MS = 60.0
DEFAULT_OUT = Path(__file__).parent / "results" / "canvas.json"


async def run_fps(running: RunningStack, rate: int, seconds: float) -> dict[str, Any]:
    stack, site = running.stack, running.site
    async with Client(stack.base_url, timeout=90, api_key=running.api_key) as api:
        await until_routed_to_us(api, running.registry, f"{site.url}/simple.html")
        print(f"[canvas] {running.settings.canvas_fps:g} pictures/s: {rate:,} events/s for "
              f"{seconds:g} s …", file=sys.stderr, flush=True)
        run = await stress_run(api, stack, site, running.chromium, running.registry, rate,
                               seconds, page_query="&canvas=1")
    span = run["seconds"]
    return {
        "canvas_fps": running.settings.canvas_fps,
        "bytes_to_viewer_per_s": round(run["bytes_received"] / span) if span else None,
        "canvas_bytes_per_s": round((run["canvas_bytes"] or 0) / span) if span else None,
        "latency_ms": run["latency_ms"],
        "latency_after_first_s_ms": run["latency_after_first_s_ms"],
        "lost": run["lost"], "gaps": run["gaps"], "resets": run["resets"],
        "sustained": run["sustained"],
        "raw": run,
    }


def report(result: dict[str, Any]) -> str:
    plan = result["plan"]
    rows = [[r["canvas_fps"], r["bytes_to_viewer_per_s"], r["canvas_bytes_per_s"],
             r["latency_ms"]["p50"], r["latency_ms"]["p99"],
             r["latency_after_first_s_ms"].get("p99"), r["lost"],
             "-" if r["latency_ms"]["p99"] is None else
             ("yes" if r["latency_ms"]["p99"] <= TARGET_P99_MS else "NO")]
            for r in result["runs"]]
    return "\n".join([
        f"an animating 640 x 400 canvas beside {plan['rate']:,} events/s for "
        f"{plan['seconds']:g} s, one viewer; {result['machine']['cpu_count']} cores", "",
        table(["canvas fps", "bytes/s to viewer", "canvas bytes/s (raw)", "p50 ms", "p99 ms",
               "steady p99 ms", "lost", f"p99<={TARGET_P99_MS:g}"], rows),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.canvas", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fps", type=lambda v: [float(x) for x in v.split(",")],
                        default=[0.0, 2.0, 5.0])
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--auth", action="store_true",
                        help="require an API key and viewer tokens, as a cluster does")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"benchmark": "canvas", "runs": [],
                              "plan": {"fps": args.fps, "rate": args.rate,
                                       "seconds": args.seconds, "auth": args.auth}}
    with bench_lock("bench.canvas"):
        result["machine"] = machine_info()
        result["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
        for fps in args.fps:
            settings = bench_settings(canvas_fps=fps, auth=args.auth)
            with bench_stack(settings) as running:
                result["runs"].append(asyncio.run(run_fps(running, args.rate, args.seconds)))
    publish(report(result), result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
