"""Latency page -> viewer socket for one viewer, and what the in-page batching window costs.

    .venv/bin/python -m bench.latency [--quick] [--flush 25,10,5] [--rate 5000]
                                      [--capacity 20000,40000,80000] [--out FILE]

For each batching window W in `--flush` (Settings.flush_ms, `RRSTREAM_FLUSH_MS`) it
starts the real stack with `Settings(flush_ms=W)` (bench/stack.py: embedded Ray on
loopback, the Serve gateway, the benchmark's stress page) and runs bench.pipeline's
stress run, unchanged:

1. Latency: one session on the stress page at `--rate` events/s (default 5,000) for
   `--seconds`, one viewer (bench/stress_watch.py) that decodes every frame. Latency
   is per bench event: the wall time its frame arrived at the viewer socket minus the
   event's own page time `t` (same machine clock), p50 and p99; each frame's header
   splits it into page -> streamer ingest and ingest -> viewer.
2. Capacity: the same at each rate in `--capacity` for `--capacity-seconds`; a rate is
   sustained when nothing is lost or reset and the viewer got >= 95% of it (bench.pipeline's
   rule). The CPU time of every process we started is recorded for each run.

In the page the batcher sends at once when the page was idle for W, else it gathers
for W: a busy page's events wait W/2 on average before they leave it, and it makes
1000/W binding calls, actor pushes and viewer frames a second. The table shows both
sides: latency at 5k/s against the highest sustained rate and the CPU per event.

The whole run holds the machine-wide benchmark lock (bench/lock.py). Medians and
ratios from one run on a shared 2-core machine; nothing asserts on time.
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
from bench.procs import OTHERS, machine_info
from bench.stack import RunningStack, bench_settings, bench_stack, until_routed_to_us
from bench.tables import fmt, publish, table
from serve.client import Client

FULL = {"flush": [25, 10, 5], "rate": 5000, "seconds": 20.0,
        "capacity": [20_000, 80_000, 120_000, 160_000], "capacity_seconds": 5.0}
QUICK = {"flush": [25, 5], "rate": 5000, "seconds": 5.0, "capacity": [20_000, 40_000],
         "capacity_seconds": 3.0}
TARGET_P50_MS, TARGET_P99_MS = 20.0, 60.0
DEFAULT_OUT = Path(__file__).parent / "results" / "latency.json"
_CPU_KEYS = ("chromium renderer", "playwright driver (node)", "session actor", "streamer actor",
             "gateway replica")


def _ours(run: dict[str, Any]) -> float:
    return round(sum(v for g, v in run["cpu_pct_of_one_core"].items() if g != OTHERS), 1)


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    span = run["seconds"]
    return {
        "rate": run["target_per_s"], "delivered_per_s": run["delivered_per_s"],
        "sustained": run["sustained"], "lost": run["lost"], "gaps": run["gaps"],
        "resets": run["resets"], "latency_ms": run["latency_ms"],
        "latency_after_first_s_ms": run.get("latency_after_first_s_ms", {}),
        "page_to_ingest_ms": run["page_to_ingest_ms"],
        "ingest_to_client_ms": run["ingest_to_client_ms"],
        "batches_per_s": round(run["batches"] / span, 1) if span else None,
        "frames_per_s": round(run["frames"] / span, 1) if span else None,
        "events_per_batch": round(run["events"] / run["batches"], 1) if run["batches"] else None,
        "cpu_ours_pct": _ours(run),
        "cpu_machine_busy_pct": round(sum(run["cpu_pct_of_one_core"].values()), 1),
        "cpu_by_group_pct": {k: run["cpu_pct_of_one_core"].get(k) for k in _CPU_KEYS},
        "cpu_ours_per_1k_events_pct": (round(_ours(run) / (run["delivered_per_s"] / 1000.0), 2)
                                       if run["delivered_per_s"] else None),
        "page_achieved_per_s": run["page_achieved_per_s"],
        # Seconds of emission whose events' p99 went over the target: stalls, not drift.
        "seconds_over_p99_target": sum(1 for b in run.get("latency_by_second", [])
                                       if (b["p99"] or 0) > TARGET_P99_MS),
        "seconds": len(run.get("latency_by_second", [])),
        "median_of_per_second_p99_ms": _median([b["p99"] for b in
                                                run.get("latency_by_second", [])]),
    }


def _median(values: list[float | None]) -> float | None:
    present = sorted(v for v in values if v is not None)
    return present[len(present) // 2] if present else None


async def run_window(running: RunningStack, plan: dict[str, Any]) -> dict[str, Any]:
    stack, site = running.stack, running.site
    async with Client(stack.base_url, timeout=90, api_key=running.api_key) as api:
        await until_routed_to_us(api, running.registry, f"{site.url}/simple.html")
        print(f"[latency] flush {running.settings.flush_ms} ms: {plan['rate']:,}/s for "
              f"{plan['seconds']:g} s …", file=sys.stderr, flush=True)
        latency = await stress_run(api, stack, site, running.chromium, running.registry,
                                   plan["rate"], plan["seconds"])
        capacity = []
        for rate in plan["capacity"]:
            print(f"[latency] flush {running.settings.flush_ms} ms: capacity at {rate:,}/s …",
                  file=sys.stderr, flush=True)
            capacity.append(await stress_run(api, stack, site, running.chromium,
                                             running.registry, rate, plan["capacity_seconds"]))
    ok = [r["target_per_s"] for r in capacity if r["sustained"]]
    if latency["sustained"]:
        ok.append(latency["target_per_s"])
    return {
        "flush_ms": running.settings.flush_ms,
        "latency": _summary(latency),
        "capacity": [_summary(r) for r in capacity],
        "sustained_per_s": max(ok) if ok else None,
        "capacity_tried_max": max(plan["capacity"], default=None),
        "raw": {"latency": latency, "capacity": capacity},
    }


def report(result: dict[str, Any]) -> str:
    plan, machine = result["plan"], result["machine"]
    windows = result["windows"]
    out = [f"one viewer, ingress {result['settings']['ingress']}, codec "
           f"{result['settings']['codec']}; {machine['cpu_count']} cores, load "
           f"{machine['load_avg_1m_at_start']} at start", "",
           f"Latency at {plan['rate']:,} events/s ({plan['seconds']:g} s), per event, page "
           f"-> viewer socket (ms)", table(
               ["flush ms", "p50", "p99", "max", "steady p50", "steady p99",
                "page>ingest p50", "ingest>client p50",
                "batches/s", "ev/batch", "lost", "CPU ours", "busy",
                f"s with p99>{TARGET_P99_MS:g}", "median 1-s p99", f"p50<={TARGET_P50_MS:g}",
                f"p99<={TARGET_P99_MS:g}"],
               [[w["flush_ms"], w["latency"]["latency_ms"]["p50"],
                 w["latency"]["latency_ms"]["p99"], w["latency"]["latency_ms"]["max"],
                 w["latency"]["latency_after_first_s_ms"].get("p50"),
                 w["latency"]["latency_after_first_s_ms"].get("p99"),
                 w["latency"]["page_to_ingest_ms"]["p50"],
                 w["latency"]["ingest_to_client_ms"]["p50"], w["latency"]["batches_per_s"],
                 w["latency"]["events_per_batch"], w["latency"]["lost"],
                 w["latency"]["cpu_ours_pct"], w["latency"]["cpu_machine_busy_pct"],
                 f"{w['latency']['seconds_over_p99_target']}/{w['latency']['seconds']}",
                 w["latency"]["median_of_per_second_p99_ms"],
                 _met(w["latency"]["latency_ms"]["p50"], TARGET_P50_MS),
                 _met(w["latency"]["latency_ms"]["p99"], TARGET_P99_MS)] for w in windows]),
           "(steady = without the first second of emission, while the page and every hop warm "
           "up; the targets are judged on the whole run)", ""]
    rates = sorted({c["rate"] for w in windows for c in w["capacity"]})
    rows = []
    for w in windows:
        by_rate = {c["rate"]: c for c in w["capacity"]}
        cells = []
        for rate in rates:
            c = by_rate.get(rate)
            cells.append(None if c is None else
                         f"{fmt(c['delivered_per_s'])} {'ok' if c['sustained'] else 'NO'} "
                         f"p50 {c['latency_ms']['p50']} cpu {c['cpu_ours_pct']:.0f}%")
        rows.append([w["flush_ms"], fmt(w["sustained_per_s"]), *cells])
    out += [f"Capacity (one session, one viewer, {plan['capacity_seconds']:g} s per rate): "
            "delivered/s, sustained?, latency p50 ms, CPU of all our processes",
            table(["flush ms", "sustained", *[f"{fmt(r)}/s" for r in rates]], rows), ""]
    out.append("CPU by process at the latency rate (% of one core)")
    out.append(table(["flush ms", *_CPU_KEYS],
                     [[w["flush_ms"], *[w["latency"]["cpu_by_group_pct"].get(k) for k in _CPU_KEYS]]
                      for w in windows]))
    return "\n".join(out)


def _met(value: float | None, target: float) -> str:
    return "-" if value is None else ("yes" if value <= target else "NO")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--flush", type=lambda v: [int(x) for x in v.split(",")],
                        help="batching windows in ms, e.g. 25,10,5")
    parser.add_argument("--rate", type=int, help="events/s for the latency run (5000)")
    parser.add_argument("--seconds", type=float, help="seconds of the latency run")
    parser.add_argument("--capacity", type=lambda v: [int(x) for x in v.split(",") if x],
                        help="rates for the capacity runs, e.g. 20000,40000,80000")
    parser.add_argument("--capacity-seconds", type=float)
    parser.add_argument("--ingress", choices=["haproxy", "python"])
    parser.add_argument("--codec")
    parser.add_argument("--auth", action="store_true",
                        help="require an API key and viewer tokens, as a cluster does")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    for key in ("flush", "rate", "seconds", "capacity", "capacity_seconds"):
        if getattr(args, key) is not None:
            plan[key] = getattr(args, key)
    out_path = args.out or DEFAULT_OUT.with_name(f"latency{'_quick' * args.quick}.json")
    result: dict[str, Any] = {"benchmark": "latency", "quick": args.quick, "plan": plan,
                              "windows": []}
    with bench_lock("bench.latency"):
        result["machine"] = machine_info()
        result["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
        for flush in plan["flush"]:
            # The capacity runs push up to ~14 MB/s of events: the byte budget, a policy
            # against hostile pages (bench.hostile), would pause them from 1 MB/s on.
            settings = bench_settings(flush_ms=flush, ingress=args.ingress, codec=args.codec,
                                      auth=args.auth, max_event_bytes_per_s=0)
            result["settings"] = settings.model_dump(include={"ingress", "codec", "auth",
                                                              "max_batch_chars"})
            with bench_stack(settings) as running:
                window = asyncio.run(run_window(running, plan))
            window["chromium_left_running"] = running.leftovers
            result["windows"].append(window)
    publish(report(result), result, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
