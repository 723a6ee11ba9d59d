"""rrstream next to two baselines: same page, same load, one viewer each.

    .venv/bin/python -m bench.baselines [--quick] [--rates 500,2000] [--seconds 10]
                                        [--out bench/results/baselines.json]

The page is bench/stress_page.html (served by bench/stress_server.py) at each rate
(full: 500 and 2,000 events/s for 10 s; quick: 500/s for 5 s). Three systems stream it:

1. rrstream: the real stack (bench/stack.py: embedded Ray on loopback, the Serve gateway,
   POST /sessions, protocol v1), watched by bench/stress_watch.py through
   bench.pipeline.stress_run, unchanged.
2. seed: the seed's original single-process design (bench/seed_baseline.py): rrweb
   `record({emit})` calls a Playwright `expose_function` once per event, and FastAPI
   sends every event as one JSON text message.
3. screencast: CDP `Page.startScreencast` (jpeg q60, maxWidth 1280), one binary message
   per frame (bench/screencast_baseline.py). It shows pixels, not events: frames/s
   instead of events/s, and latency per frame (receipt − the frame's metadata.timestamp).

The baselines run first, each in its own process, with no Ray running; then the rrstream
stack starts once for all rates. In every case the viewer connects first and then the
page is let go (GET /go), and the run ends at the page's "bench-done" event (the
screencast, which carries no events, ends 0.5 s after the page's POST /report).

Columns: wire B/s is what the viewer's socket read (TCP payload: WebSocket framing plus
message bytes after any permessage-deflate), over the page's emitting time (the
`elapsed_ms` the page reports); msg B/s is the application bytes (after the WebSocket
layer inflated them); latency per event is arrival − the event's page `t`. CPU ours is
every process the run started (browser, driver, server or actors, this client) in % of
one core, from release to the end. Everything holds the benchmark lock (bench/lock.py).
One run on a shared 2-core machine: read medians and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import struct
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from bench.lock import bench_lock
from bench.pipeline import stress_run
from bench.procs import OTHERS, ChromiumWatch, CpuMeter, machine_info
from bench.stack import bench_settings, bench_stack, free_port, reap, until_routed_to_us
from bench.stress_server import StressServer
from bench.tables import fmt, publish, spread, table
from serve.client import Client

FULL = {"rates": [500, 2000], "seconds": 10.0}
QUICK = {"rates": [500], "seconds": 5.0}
DEFAULT_OUT = Path(__file__).parent / "results" / "baselines.json"
_ROOT = Path(__file__).resolve().parent.parent

# Wire bytes: what every client WebSocket of this process read from its socket. Only one
# viewer is connected during a measured run, so a global counter reset per run will do.
_WIRE = {"bytes": 0}
_original_data_received = ClientConnection.data_received


def _counting_data_received(self: ClientConnection, data: bytes) -> None:
    _WIRE["bytes"] += len(data)
    _original_data_received(self, data)


ClientConnection.data_received = _counting_data_received  # type: ignore[method-assign]


def _ours(cpu: dict[str, float]) -> float:
    return round(sum(v for g, v in cpu.items() if g != OTHERS), 1)


def _elapsed_s(page: dict[str, Any], fallback: float) -> float:
    ms = page.get("elapsed_ms") or 0
    return ms / 1000.0 if ms else fallback


async def _watch_seed(url: str, release: Any, timeout_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {"latency": {}, "messages": 0, "msg_bytes": 0, "done": None,
                           "first_t": None, "last_arrival": None, "error": None,
                           "extensions": []}
    try:
        async with asyncio.timeout(timeout_s), websockets.connect(url, max_size=None) as ws:
            header = ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None
            out["extensions"] = [header] if header else []
            release()
            async for message in ws:
                arrival = time.time() * 1000.0
                out["messages"] += 1
                out["msg_bytes"] += len(message.encode() if isinstance(message, str) else message)
                event = orjson.loads(message)
                if event.get("type") != 5:
                    continue
                data = event.get("data") or {}
                if data.get("tag") == "bench":
                    i, t = data["payload"]["i"], float(data["payload"]["t"])
                    out["latency"].setdefault(i, arrival - t)
                    out["first_t"] = t if out["first_t"] is None else min(out["first_t"], t)
                    out["last_arrival"] = arrival
                elif data.get("tag") == "bench-done":
                    out["done"] = data.get("payload")
                    break
    except TimeoutError:
        out["error"] = f"no bench-done within {timeout_s:.0f} s"
    except (websockets.ConnectionClosed, OSError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


async def _watch_screencast(url: str, release: Any, site: StressServer, run: str,
                            timeout_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {"latency": [], "frames": 0, "msg_bytes": 0, "done": None,
                           "error": None, "extensions": [], "frame_bytes": []}
    try:
        async with asyncio.timeout(timeout_s), websockets.connect(url, max_size=None) as ws:
            header = ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None
            out["extensions"] = [header] if header else []
            release()
            report = asyncio.create_task(site.report(run, timeout_s))
            grace_until: float | None = None
            while True:
                if report.done() and grace_until is None:
                    out["done"] = report.result()
                    grace_until = time.monotonic() + 0.5
                if grace_until is not None and time.monotonic() > grace_until:
                    break
                try:
                    message = await asyncio.wait_for(ws.recv(), 0.1)
                except TimeoutError:
                    continue
                arrival = time.time() * 1000.0
                if not isinstance(message, bytes) or len(message) < 8:
                    continue
                (stamp,) = struct.unpack(">d", message[:8])
                out["frames"] += 1
                out["msg_bytes"] += len(message)
                out["frame_bytes"].append(len(message) - 8)
                if stamp:
                    out["latency"].append(arrival - stamp * 1000.0)
    except TimeoutError:
        out["error"] = f"no page report within {timeout_s:.0f} s"
    except (websockets.ConnectionClosed, OSError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


async def baseline_run(kind: str, site: StressServer, chromium: ChromiumWatch, rate: int,
                       seconds: float) -> dict[str, Any]:
    """One run of bench/<kind>_baseline.py (its own process) on the stress page."""
    run = uuid.uuid4().hex[:10]
    port = free_port()
    page_url = f"{site.url}/stress.html?rate={rate}&seconds={seconds:g}&run={run}"
    proc = subprocess.Popen(
        [sys.executable, "-m", f"bench.{kind}_baseline", "--url", page_url, "--port", str(port),
         "--seconds-max", str(int(seconds) + 150)], cwd=_ROOT, stdout=subprocess.DEVNULL)
    meter, window = CpuMeter(), {}
    health: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{kind} baseline exited with {proc.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await api.get("/healthz")).json().get("ready"):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} baseline not ready within 60 s")
                await asyncio.sleep(0.2)
            chromium.scan()

            def release() -> None:
                window["before"], window["t0"] = meter.snapshot(), time.monotonic()
                _WIRE["bytes"] = 0
                site.release(run)

            ws_url = f"ws://127.0.0.1:{port}/ws"
            if kind == "seed":
                seen = await _watch_seed(ws_url, release, seconds + 60)
            else:
                seen = await _watch_screencast(ws_url, release, site, run, seconds + 60)
            wire = _WIRE["bytes"]
            wall = time.monotonic() - window["t0"] if "t0" in window else 0.0
            cpu = meter.usage(window["before"], meter.snapshot(), wall) if "before" in window else {}
            with contextlib.suppress(httpx.HTTPError):
                health = (await api.get("/healthz")).json()
    finally:
        chromium.scan()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    page = seen["done"] or await site.report(run, 2.0) or {}
    span = _elapsed_s(page, wall)
    row: dict[str, Any] = {
        "system": kind, "target_per_s": rate, "seconds": seconds,
        "page_achieved_per_s": round(float(page.get("achieved", 0.0)), 1),
        "page": {k: page.get(k) for k in ("sent", "achieved", "behind", "elapsed_ms")},
        "wire_bytes": wire, "msg_bytes": seen["msg_bytes"],
        "wire_bytes_per_s": round(wire / span) if span else None,
        "msg_bytes_per_s": round(seen["msg_bytes"] / span) if span else None,
        "ws_extensions": seen["extensions"], "cpu_pct_of_one_core": cpu,
        "cpu_ours_pct": _ours(cpu), "server": health, "error": seen["error"],
        "wall_s": round(wall, 2),
    }
    if kind == "seed":
        sent = int(page.get("sent", 0))
        received = len(seen["latency"])
        drain = ((seen["last_arrival"] - seen["first_t"]) / 1000.0
                 if seen["last_arrival"] is not None and seen["first_t"] is not None else 0.0)
        row.update({
            "received": received, "lost": sum(1 for i in range(sent) if i not in seen["latency"]),
            "delivered_per_s": round(received / drain, 1) if drain > 0 else 0.0,
            "latency_ms": spread(list(seen["latency"].values())),
            "messages": seen["messages"],
            "messages_per_s": round(seen["messages"] / span, 1) if span else None,
        })
    else:
        row.update({
            "frames": seen["frames"],
            "frames_per_s": round(seen["frames"] / span, 1) if span else None,
            "latency_ms": spread(seen["latency"]),
            "jpeg_bytes": spread([float(b) for b in seen["frame_bytes"]]),
        })
    return row


def _rrstream_row(r: dict[str, Any], wire: int) -> dict[str, Any]:
    page = r["page"]
    span = _elapsed_s(page, r["seconds"])
    return {
        "system": "rrstream", "target_per_s": r["target_per_s"], "seconds": r["seconds"],
        "page_achieved_per_s": r["page_achieved_per_s"], "page": page,
        "wire_bytes": wire, "msg_bytes": r["bytes_received"],
        "wire_bytes_per_s": round(wire / span) if span else None,
        "msg_bytes_per_s": round(r["bytes_received"] / span) if span else None,
        "ws_extensions": r["ws_extensions"], "cpu_pct_of_one_core": r["cpu_pct_of_one_core"],
        "cpu_ours_pct": _ours(r["cpu_pct_of_one_core"]), "error": r["error"],
        "received": r["received"], "lost": r["lost"], "delivered_per_s": r["delivered_per_s"],
        "latency_ms": r["latency_ms"], "messages": r["frames"],
        "messages_per_s": round(r["frames"] / span, 1) if span else None,
        "raw": r,
    }


async def rrstream_runs(running: Any, rates: list[int], seconds: float) -> list[dict[str, Any]]:
    stack, site = running.stack, running.site
    rows = []
    async with Client(stack.base_url, timeout=90) as api:
        await until_routed_to_us(api, running.registry, f"{site.url}/simple.html")
        for rate in rates:
            print(f"[baselines] rrstream {rate:,}/s for {seconds:g} s …", file=sys.stderr,
                  flush=True)
            _WIRE["bytes"] = 0
            r = await stress_run(api, stack, site, running.chromium, running.registry, rate,
                                 seconds)
            rows.append(_rrstream_row(r, _WIRE["bytes"]))
    return rows


def report(result: dict[str, Any]) -> str:
    machine = result["machine"]
    rows = sorted(result["runs"], key=lambda r: (r["target_per_s"],
                                                 ["rrstream", "seed", "screencast"].index(
                                                     r["system"])))
    out = [f"stress page, one viewer each; {machine['cpu_count']} cores, load "
           f"{machine['load_avg_1m_at_start']} at start", ""]
    out.append(table(
        ["system", "target/s", "page/s", "delivered/s", "frames/s", "lost", "msgs/s",
         "wire B/s", "msg B/s", "B/event", "lat p50", "lat p99", "lat max", "CPU ours %",
         "error"],
        [[r["system"], fmt(r["target_per_s"]), fmt(r["page_achieved_per_s"]),
          fmt(r.get("delivered_per_s")), r.get("frames_per_s"), r.get("lost"),
          r.get("messages_per_s"), fmt(r["wire_bytes_per_s"]), fmt(r["msg_bytes_per_s"]),
          (round(r["wire_bytes_per_s"] / r["page_achieved_per_s"], 1)
           if r["wire_bytes_per_s"] and r["page_achieved_per_s"] else None),
          r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["latency_ms"]["max"],
          r["cpu_ours_pct"], (r["error"] or "")[:40] or None] for r in rows]))
    out += ["", "B/event = wire B/s ÷ page/s (for the screencast: bytes per page event it "
                "displays as pixels). Latency in ms; for the screencast per frame."]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rates", type=lambda v: [int(x) for x in v.split(",") if x])
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--only", choices=["rrstream", "seed", "screencast"], action="append")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    if args.rates:
        plan["rates"] = args.rates
    if args.seconds:
        plan["seconds"] = args.seconds
    systems = args.only or ["seed", "screencast", "rrstream"]
    out_path = args.out or DEFAULT_OUT.with_name(f"baselines{'_quick' * args.quick}.json")
    result: dict[str, Any] = {"benchmark": "baselines", "quick": args.quick, "plan": plan,
                              "systems": systems, "runs": []}
    os.environ["RAY_ADDRESS"] = "local"
    with bench_lock("bench.baselines"):
        result["machine"] = machine_info()
        result["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
        chromium = ChromiumWatch()
        try:
            with StressServer() as site:
                for rate in plan["rates"]:
                    for kind in ("seed", "screencast"):
                        if kind in systems:
                            print(f"[baselines] {kind} {rate:,}/s for {plan['seconds']:g} s …",
                                  file=sys.stderr, flush=True)
                            result["runs"].append(asyncio.run(
                                baseline_run(kind, site, chromium, rate, plan["seconds"])))
        finally:
            result["baseline_chromium_left_running"] = reap(chromium)
        if "rrstream" in systems:
            settings = bench_settings()
            result["settings"] = settings.model_dump(include={"ingress", "codec", "flush_ms"})
            with bench_stack(settings) as running:
                result["runs"] += asyncio.run(rrstream_runs(running, plan["rates"],
                                                            plan["seconds"]))
            result["rrstream_chromium_left_running"] = running.leftovers
    publish(report(result), result, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
