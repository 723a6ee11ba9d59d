"""Late join: how long a real viewer page takes to show a busy session it joins midway.

    .venv/bin/python -m bench.late_join [--quick] [--rate 2000] [--joins 10] [--seed 7]
                                        [--out bench/results/late_join.json]

It starts the real stack (bench/stack.py: embedded Ray on loopback, the Serve gateway on
a free port), makes one session on bench/stress_page.html at `--rate` custom events/s
(default 2,000; the page also changes its counter every ~250 ms, so rrweb checkouts come
every 5 s) and lets the page go at once. While the page emits, at `--joins` random
moments (full: 10 over ~60 s; quick: 3 over ~20 s; `--seed` fixes them) it opens the
session's `viewer_url` in a fresh context of one headless Chromium
(pipeline.browser.launch_chromium) and measures, per join:

| column | meaning |
| --- | --- |
| goto>shown | from just before `page.goto(viewer_url)` to the moment the Replayer's iframe shows the page: `window.rrstreamViewer.iframeDocument()?.body?.childElementCount > 0`, polled every 20 ms with `page.wait_for_function` |
| ws>shown | from the viewer's WebSocket (Playwright `page.on("websocket")`, which fires when the page opens it) to shown |
| ws>1st frame | from the WebSocket to its first binary frame (Playwright `framereceived`) |
| events, frames, segs | `rrstreamViewer.eventsApplied`, `framesReceived` and `segmentsStarted` when shown |

The summary gives median and max; the target is a median ws>shown under 1 s. The
whole run holds the benchmark lock (bench/lock.py). Medians from one run on a shared
2-core machine; nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from bench.lock import bench_lock
from bench.procs import machine_info
from bench.stack import RunningStack, bench_settings, bench_stack, ours, until_routed_to_us
from bench.tables import publish, table
from pipeline.browser import launch_chromium
from serve.client import Client

FULL = {"rate": 2000, "joins": 10, "seconds": 60.0}
QUICK = {"rate": 2000, "joins": 3, "seconds": 20.0}
TARGET_MS = 1000.0
DEFAULT_OUT = Path(__file__).parent / "results" / "late_join.json"
_SHOWN = "() => (window.rrstreamViewer?.iframeDocument()?.body?.childElementCount ?? 0) > 0"
_STATE = """() => { const v = window.rrstreamViewer; return v && {events: v.eventsApplied,
  frames: v.framesReceived, segments: v.segmentsStarted, resets: v.resets,
  connection: v.connection, codec: v.codec}; }"""


def _ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round((b - a) * 1000.0, 1)


async def one_join(browser: Any, viewer_url: str, at_s: float) -> dict[str, Any]:
    context = await browser.new_context()
    marks: dict[str, float] = {}
    try:
        page = await context.new_page()

        def on_ws(ws: Any) -> None:
            marks.setdefault("ws", time.monotonic())

            def on_frame(payload: Any) -> None:
                if isinstance(payload, bytes):
                    marks.setdefault("first_frame", time.monotonic())
            ws.on("framereceived", on_frame)

        page.on("websocket", on_ws)
        marks["goto"] = time.monotonic()
        error = None
        try:
            await page.goto(viewer_url)
            marks["loaded"] = time.monotonic()
            await page.wait_for_function(_SHOWN, polling=20, timeout=15_000)
            marks["shown"] = time.monotonic()
        except Exception as exc:  # a timeout is a result too
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        state = None
        try:
            state = await page.evaluate(_STATE)
        except Exception:
            pass
        return {"at_s": round(at_s, 2), "goto_to_loaded_ms": _ms(marks["goto"], marks.get("loaded")),
                "goto_to_shown_ms": _ms(marks["goto"], marks.get("shown")),
                "ws_to_shown_ms": _ms(marks.get("ws"), marks.get("shown")),
                "goto_to_ws_ms": _ms(marks["goto"], marks.get("ws")),
                "ws_to_first_frame_ms": _ms(marks.get("ws"), marks.get("first_frame")),
                "viewer": state, "error": error}
    finally:
        await context.close()


async def run(running: RunningStack, plan: dict[str, Any], seed: int) -> dict[str, Any]:
    stack, site = running.stack, running.site
    rng = random.Random(seed)
    rate, seconds, joins = plan["rate"], plan["seconds"], plan["joins"]
    # Random moments, at least 3 s apart, between 3 s in and 5 s before the page stops.
    slots = sorted(rng.uniform(3.0, seconds - 5.0) for _ in range(joins))
    for i in range(1, len(slots)):
        slots[i] = max(slots[i], slots[i - 1] + 3.0)
    async with Client(stack.base_url, timeout=90) as api:
        await until_routed_to_us(api, running.registry, f"{site.url}/simple.html")
        tag = uuid.uuid4().hex[:10]
        info = await api.create_session(
            f"{site.url}/stress.html?rate={rate}&seconds={seconds + 5:g}&run={tag}",
            name="bench-late-join", max_duration_s=int(seconds) + 120)
        sid = info["id"]
        if not await ours(running.registry, sid):
            raise RuntimeError(f"POST /sessions reached another stack (session {sid})")
        site.release(tag)
        rows: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + 60
            while (await api.session(sid)).get("state") not in ("running", "idle"):
                if time.monotonic() > deadline:
                    raise RuntimeError("session did not start within 60 s")
                await asyncio.sleep(0.2)
            t0 = time.monotonic()
            async with async_playwright() as pw:
                browser = await launch_chromium(pw, running.settings)
                try:
                    running.chromium.scan()
                    for at in slots:
                        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
                        print(f"[late_join] join at {at:.1f} s …", file=sys.stderr, flush=True)
                        rows.append(await one_join(browser, info["viewer_url"],
                                                   time.monotonic() - t0))
                        running.chromium.scan()
                finally:
                    await browser.close()
            stats = await api.session(sid)
        finally:
            await api.stop_session(sid)
    return {"session": {k: stats.get(k) for k in ("state", "events", "batches", "bytes_raw",
                                                  "bytes_compressed", "error")},
            "joins": rows}


def _summary(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    values = [r[key] for r in rows if r.get(key) is not None]
    return {"median": round(statistics.median(values), 1) if values else None,
            "max": max(values) if values else None, "n": len(values)}


def report(result: dict[str, Any]) -> str:
    rows = result["joins"]
    out = [f"late join on the stress page at {result['plan']['rate']:,} events/s; "
           f"{result['machine']['cpu_count']} cores, load "
           f"{result['machine']['load_avg_1m_at_start']} at start", "",
           table(["#", "at s", "goto>ws", "goto>loaded", "ws>1st frame", "ws>shown",
                  "goto>shown", "events", "frames", "segs", "error"],
                 [[i + 1, r["at_s"], r["goto_to_ws_ms"], r["goto_to_loaded_ms"],
                   r["ws_to_first_frame_ms"], r["ws_to_shown_ms"], r["goto_to_shown_ms"],
                   (r["viewer"] or {}).get("events"), (r["viewer"] or {}).get("frames"),
                   (r["viewer"] or {}).get("segments"), (r["error"] or "")[:50] or None]
                  for i, r in enumerate(rows)]), ""]
    s = result["summary"]
    out.append(table(["ms", "median", "max", "n"],
                     [[k, v["median"], v["max"], v["n"]] for k, v in s.items()
                      if isinstance(v, dict)]))
    out.append(f"\ntarget: median ws>shown < {TARGET_MS:.0f} ms: "
               f"{'met' if s['target_met'] else 'NOT met'}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.late_join", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=int)
    parser.add_argument("--joins", type=int)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    if args.rate:
        plan["rate"] = args.rate
    if args.joins:
        plan["joins"] = args.joins
        plan["seconds"] = max(plan["seconds"], 3.5 * args.joins + 10)
    out_path = args.out or DEFAULT_OUT.with_name(f"late_join{'_quick' * args.quick}.json")
    result: dict[str, Any] = {"benchmark": "late_join", "quick": args.quick, "plan": plan,
                              "seed": args.seed}
    with bench_lock("bench.late_join"):
        result["machine"] = machine_info()
        result["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
        settings = bench_settings()
        result["settings"] = settings.model_dump(include={"ingress", "codec", "flush_ms",
                                                          "checkout_every_ms"})
        with bench_stack(settings) as running:
            result.update(asyncio.run(run(running, plan, args.seed)))
        result["chromium_left_running"] = running.leftovers
    rows = result["joins"]
    summary: dict[str, Any] = {k: _summary(rows, k) for k in (
        "goto_to_ws_ms", "ws_to_first_frame_ms", "ws_to_shown_ms", "goto_to_shown_ms")}
    summary["failed"] = sum(1 for r in rows if r["error"])
    median = summary["ws_to_shown_ms"]["median"]
    summary["target_met"] = median is not None and median < TARGET_MS and not summary["failed"]
    result["summary"] = summary
    publish(report(result), result, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
