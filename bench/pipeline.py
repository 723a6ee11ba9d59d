"""End-to-end pipeline benchmark: page -> CDP binding -> session actor -> streamer actor ->
Serve gateway -> WebSocket viewer, all real, on this machine.

    .venv/bin/python -m bench.pipeline [--quick] [--out bench/results/pipeline.json]

It starts the stack once (embedded Ray on loopback, the Serve gateway on a free port,
4 browser slots) and a small web server of its own (bench/stress_server.py), then:

1. Sustained events/s without loss. For each target rate R, one session opens
   bench/stress_page.html?rate=R&seconds=S. A viewer attaches (hello, resume_after
   null); once its first frame arrives the page is let go and calls
   `window.__rrstreamAddCustomEvent("bench", {i, t: Date.now()})` R times a second
   for S seconds, in catch-up chunks every ~4 ms, then emits one "bench-done" event
   with its own count and achieved rate. The viewer decodes every frame, checks that
   sequence numbers are contiguous, and collects the bench events. Lost = indices
   0..sent-1 never received. Delivered/s = received / (last arrival - first event's
   page time). A rate is *sustained* when nothing is lost, no frame jumped or reset,
   and delivered/s >= 95% of the target; the headline is the highest such rate.
2. Latency page -> viewer: per bench event, the wall time at frame receipt minus its
   payload `t` (same machine clock); median and p99 per rate, quoted at 1k and 5k/s.
   Each frame's header splits it: `ingest_ts - last_ts` (in-page batching window, CDP
   binding, Playwright, actor hop to the streamer) and `arrival - ingest_ts` (streamer
   long-poll, gateway, Serve ingress, client).
3. Session start: POST /sessions on a simple page, then a viewer connects at once;
   times from just before the POST to its response, to the browser actor starting
   (`started_at`), to the page taking its FullSnapshot (the event's timestamp), to the
   streamer receiving it (frame `ingest_ts`), to `welcome`, and to the viewer
   receiving the first binary frame and the FullSnapshot.

Per stress run it also samples the CPU time of every process it started, grouped by
role (Chromium renderer, Playwright driver, each actor, Serve ingress, this client), to
show where the time goes. Nothing here asserts on time: one run on a shared machine,
medians and ratios only.

Before measuring, it makes sure the gateway port reaches its own stack (see
`_until_routed_to_us`), and it checks every session it creates against its own registry.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.lock import bench_lock
from bench.procs import OTHERS, ChromiumWatch, CpuMeter, machine_info
from bench.stack import Stack, bench_settings, bench_stack
from bench.stack import ours as _ours
from bench.stack import until_routed_to_us as _until_routed_to_us
from bench.stress_server import StressServer
from bench.stress_watch import time_first_snapshot, watch_run
from bench.tables import fmt as _fmt
from bench.tables import median_of as _median
from bench.tables import publish
from bench.tables import spread as _spread
from bench.tables import table as _table
from serve.client import Client

FULL = {"rates": [1000, 5000, 10_000, 20_000, 40_000], "seconds": 5.0, "starts": 5}
QUICK = {"rates": [1000, 5000, 20_000], "seconds": 3.0, "starts": 3}
SUSTAINED_SHARE = 0.95
DEFAULT_OUT = Path(__file__).parent / "results" / "pipeline.json"
_START_KEYS = ("post_ms", "browser_start_ms", "snapshot_taken_ms", "snapshot_ingested_ms",
               "welcome_ms", "first_frame_ms", "full_snapshot_ms")


async def stress_run(api: Client, stack: Stack, site: StressServer,
                     chromium: ChromiumWatch, registry: Any, rate: int,
                     seconds: float, page_query: str = "") -> dict[str, Any]:
    """`page_query`: more of the stress page's query (`&canvas=1`)."""
    run = uuid.uuid4().hex[:10]
    created = await api.create_session(
        f"{site.url}/stress.html?rate={rate}&seconds={seconds:g}&run={run}{page_query}",
        name=f"bench-{rate}", max_duration_s=int(seconds) + 120)
    sid, token = created["id"], (created.get("view_link") or {}).get("token")
    if not await _ours(registry, sid):
        raise RuntimeError(f"POST /sessions reached another stack (session {sid})")
    meter, window = CpuMeter(), {}

    def attached() -> None:
        chromium.scan()
        window["before"], window["t0"] = meter.snapshot(), time.monotonic()
        site.release(run)

    try:
        seen = await watch_run(f"{stack.ws_url}/sessions/{sid}/stream", attached, seconds + 60,
                               token)
        cpu = (meter.usage(window["before"], meter.snapshot(), time.monotonic() - window["t0"])
               if "before" in window else {})
        page = seen.done or await site.report(run, 5.0) or {}
        info = await api.session(sid)
    finally:
        await api.stop_session(sid)

    sent = int(page.get("sent", 0))
    received = len(seen.latency_ms)
    lost = sum(1 for i in range(sent) if i not in seen.latency_ms)
    span_s = ((seen.last_arrival - seen.first_t) / 1000.0
              if seen.last_arrival is not None and seen.first_t is not None else 0.0)
    delivered = received / span_s if span_s > 0 else 0.0
    sustained = (bool(page) and lost == 0 and not (seen.gaps or seen.resets or seen.bad_frames)
                 and seen.error is None and delivered >= SUSTAINED_SHARE * rate)
    return {
        "target_per_s": rate, "seconds": seconds, "session_id": sid,
        "page": {k: page.get(k) for k in ("sent", "achieved", "behind", "elapsed_ms", "ticks",
                                          "max_tick_gap_ms")},
        "page_achieved_per_s": round(float(page.get("achieved", 0.0)), 1),
        "received": received, "lost": lost, "duplicates": seen.duplicates,
        "gaps": seen.gaps, "resets": seen.resets, "bad_frames": seen.bad_frames,
        "delivered_per_s": round(delivered, 1), "sustained": sustained,
        "latency_ms": _spread(list(seen.latency_ms.values())),
        "latency_by_second": _by_second(seen.latency_ms, rate),
        # Without the first second of emission, when the page and every hop warm up.
        "latency_after_first_s_ms": _spread([v for i, v in seen.latency_ms.items() if i >= rate]),
        "page_to_ingest_ms": _spread(seen.page_to_ingest_ms),
        "ingest_to_client_ms": _spread(seen.ingest_to_client_ms),
        "frames": seen.frames, "batches": seen.batches, "events": seen.events,
        "bytes_received": seen.bytes, "ws_extensions": seen.extensions,
        "streamer": {k: info.get(k) for k in ("events", "batches", "bytes_raw",
                                              "bytes_compressed")},
        "canvas_bytes": info.get("canvas_bytes"),
        "session_state": info.get("state"), "session_error": info.get("error"),
        "cpu_pct_of_one_core": cpu, "error": seen.error,
    }


def _by_second(latency_ms: dict[int, float], rate: int) -> list[dict[str, Any]]:
    """Per-event latency for each second of the page's emission (index // rate): one bad
    second shows a stall rather than a slow steady state."""
    seconds: dict[int, list[float]] = {}
    for index, value in latency_ms.items():
        seconds.setdefault(index // max(rate, 1), []).append(value)
    return [{"second": k, "events": len(v), **_spread(v)} for k, v in sorted(seconds.items())]


async def start_run(api: Client, stack: Stack, site: StressServer,
                    chromium: ChromiumWatch, registry: Any) -> dict[str, Any]:
    t0 = time.time() * 1000.0
    sid = (await api.create_session(f"{site.url}/simple.html", name="bench-start",
                                    max_duration_s=120))["id"]
    post_ms = time.time() * 1000.0 - t0
    if not await _ours(registry, sid):
        raise RuntimeError(f"POST /sessions reached another stack (session {sid})")
    try:
        first = await time_first_snapshot(f"{stack.ws_url}/sessions/{sid}/stream", t0, 60.0)
        chromium.scan()
        info = await api.session(sid)
    finally:
        await api.stop_session(sid)
    started = info.get("started_at")
    return {"session_id": sid, "post_ms": round(post_ms, 1),
            "browser_start_ms": round(started * 1000.0 - t0, 1) if started else None,
            **{k: (round(v, 1) if isinstance(v, float) else v)
               for k, v in asdict(first).items()}}


async def run_all(stack: Stack, site: StressServer, chromium: ChromiumWatch,
                  registry: Any, plan: dict[str, Any]) -> dict[str, Any]:
    rates: list[dict[str, Any]] = []
    starts: list[dict[str, Any]] = []
    async with Client(stack.base_url, timeout=90) as api:
        await _until_routed_to_us(api, registry, f"{site.url}/simple.html")
        for rate in plan["rates"]:
            print(f"[bench] {rate} events/s for {plan['seconds']:g} s …", file=sys.stderr,
                  flush=True)
            rates.append(await stress_run(api, stack, site, chromium, registry, rate,
                                          plan["seconds"]))
        for index in range(plan["starts"]):
            print(f"[bench] session start {index + 1}/{plan['starts']} …", file=sys.stderr,
                  flush=True)
            starts.append(await start_run(api, stack, site, chromium, registry))
        # Every session above has ended: a gateway that cleans up holds no hub for them.
        gateway_after = await api.healthz()
    ok = [r["target_per_s"] for r in rates if r["sustained"]]
    by_rate = {r["target_per_s"]: r for r in rates}
    return {
        "sustained_per_s": max(ok) if ok else None,
        "latency_ms": {str(r): by_rate[r]["latency_ms"] for r in (1000, 5000) if r in by_rate},
        "rates": rates,
        "gateway_healthz_after": gateway_after,
        "session_start": {
            **{f"median_{k}": _median(starts, k) for k in _START_KEYS},
            "runs": starts,
        },
    }


def report(result: dict[str, Any]) -> str:
    rates = result["rates"]
    seconds = rates[0]["seconds"] if rates else 0
    conf, machine = result["settings"], result["machine"]
    out = [f"ingress {conf['ingress']}, codec {conf['codec']}, flush {conf['flush_ms']} ms; "
           f"{machine['cpu_count']} cores, load {machine['load_avg_1m_at_start']} at start", "",
           f"Sustained rate (one session per row, {seconds:g} s each)", _table(
        ["target/s", "page/s", "delivered/s", "lost", "gap/reset", "lat p50", "lat p99",
         "page>ingest p50", "ingest>client p50", "frames", "ev/frame", "ok"],
        [[_fmt(r["target_per_s"]), _fmt(r["page_achieved_per_s"]), _fmt(r["delivered_per_s"]),
          r["lost"], f"{r['gaps']}/{r['resets']}", r["latency_ms"]["p50"],
          r["latency_ms"]["p99"], r["page_to_ingest_ms"]["p50"],
          r["ingest_to_client_ms"]["p50"], r["frames"],
          round(r["events"] / r["frames"]) if r["frames"] else None,
          "yes" if r["sustained"] else "NO" + (f" ({r['error']})" if r["error"] else "")]
         for r in rates]), "(latencies in ms)", ""]
    groups: list[str] = []
    for r in rates:
        groups += [g for g in r["cpu_pct_of_one_core"] if g not in groups]
    ours = [round(sum(v for g, v in r["cpu_pct_of_one_core"].items() if g != OTHERS), 1)
            for r in rates]
    busy = [round(sum(r["cpu_pct_of_one_core"].values()), 1) for r in rates]
    cores = result["machine"]["cpu_count"]
    out += [f"CPU while emitting, % of one core ({cores} cores = {cores * 100}%)", _table(
        ["process group", *[_fmt(r["target_per_s"]) or "" for r in rates]],
        [[g, *[r["cpu_pct_of_one_core"].get(g) for r in rates]] for g in groups]
        + [["= all ours", *ours], ["= machine busy", *busy]]), ""]
    start = result["session_start"]
    out += ["Session start (ms from just before POST /sessions)", _table(
        ["run", "POST", "actor start", "snapshot taken", "ingested", "welcome", "first frame",
         "FullSnapshot"],
        [[i + 1, s["post_ms"], s["browser_start_ms"], s["snapshot_taken_ms"],
          s["snapshot_ingested_ms"], s["welcome_ms"], s["first_frame_ms"],
          s["full_snapshot_ms"] if s["error"] is None else s["error"]]
         for i, s in enumerate(start["runs"])]
        + [["median", *(start[f"median_{k}"] for k in _START_KEYS)]]), ""]
    lat = result["latency_ms"]
    best = result["sustained_per_s"]
    capped = " (the highest rate tried)" if rates and best == rates[-1]["target_per_s"] else ""
    out.append(f"Sustained without loss: {_fmt(best)} events/s{capped}")
    for rate, spread in lat.items():
        out.append(f"Latency page -> viewer at {int(rate):,}/s: median {spread['p50']} ms, "
                   f"p99 {spread['p99']} ms")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rates, 3 s runs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--rates", type=lambda v: [int(r) for r in v.split(",")],
                        help="override the target rates, e.g. 40000,80000")
    parser.add_argument("--seconds", type=float, help="override the seconds per rate")
    parser.add_argument("--ingress", choices=["haproxy", "python"],
                        help="Serve data plane (default: the Settings default)")
    parser.add_argument("--codec", help="stream codec (default: the Settings default)")
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    if args.rates:
        plan["rates"] = args.rates
    if args.seconds:
        plan["seconds"] = args.seconds

    overrides = {k: v for k, v in (("ingress", args.ingress), ("codec", args.codec)) if v}
    # The sustained rates go past 1 MB/s of events: the byte budget, a policy against
    # hostile pages (bench.hostile), would pause them.
    settings = bench_settings(**overrides, max_event_bytes_per_s=0)
    # The whole measured run holds the machine-wide benchmark lock (bench/lock.py).
    with bench_lock("bench.pipeline"):
        machine = machine_info()
        started = datetime.now(UTC).isoformat(timespec="seconds")
        with bench_stack(settings) as running:
            result = asyncio.run(run_all(running.stack, running.site, running.chromium,
                                         running.registry, plan))
    leftovers = running.leftovers
    result = {"benchmark": "pipeline", "timestamp": started, "quick": args.quick,
              "machine": machine, "plan": plan, "chromium_left_running": leftovers,
              "settings": settings.model_dump(include={"ingress", "codec", "flush_ms",
                                                       "max_batch_chars", "viewer_queue_frames",
                                                       "browser_slots", "checkout_every_ms"}),
              **result}
    publish(report(result), result, args.out)
    return 0 if result["sustained_per_s"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
