"""Cluster capacity: memory per session, start time on a warm cluster, and 1 -> 3 nodes.

    .venv/bin/python -m bench.cluster [--quick] [--parts memory,start,scale]
                                      [--out bench/results/cluster.json]

Three measurements, all through the public HTTP API and WebSocket protocol:

1. Memory per session and sessions per node (`memory`). An embedded single-node stack
   (bench/stack.py) with 24 browser slots and `warm_browsers=0`. Sessions are started one
   by one; each runs the built-in demo workflow (pipeline/demo_workflow.py) in a loop on
   the bundled demo site, which this script serves itself on loopback (both origins, so
   the cross-origin widget is there too). After each new session reaches `running` and
   settles, a window of `--window` seconds measures the machine's CPU, events/s of every
   session and how the workflows progress; at its end the memory of every live session is
   read: RSS, USS and PSS (psutil `memory_full_info`) of its session actor process and all
   its descendants (Playwright's node driver, and every Chromium process when the session
   has its own), its streamer actor process, and its share of the node's shared Chromium
   (the `browser:<node>` actor and its descendants, divided evenly among the node's
   sessions). Actor pids come from the GCS actor table. It stops at the cap (16; quick
   4) or once the node is saturated, in two windows in a row: the CPU of our own processes
   >= 180 % (the machine is shared: what others use is reported, not counted), a workflow
   step failed (timed out), or events/s per session fell below half of what one session
   alone did. How much slower the workflow's active steps got is reported too.
2. Session start on a warm cluster (`start`). POST /sessions on a simple page, a viewer
   connects as soon as the POST returns (bench/stress_watch.time_first_snapshot), times
   to the first FullSnapshot and its split; 10 starts one after another (quick 3), with
   `warm_browsers=1` (the default: before each start the script waits until /pool shows
   the warm browser ready), with `warm_browsers=1` and a single browser slot (so no
   replacement browser launches beside the start), and with `warm_browsers=0` for
   contrast. Then, without Ray, it times each phase of a start in this process: a new
   worker's Python imports, Playwright start, Chromium launch, and opening a recorded
   page on a running browser (alone, and with another browser launching beside it).
3. Nodes 1 -> 3 (`scale`). A `ray.cluster_utils.Cluster` on loopback 127.0.0.2 (as in
   tests/integration/multinode.py): 1, 2, then 3 nodes, 2 browser slots and num_cpus=1
   each, the gateway HeadOnly behind HAProxy. Each size runs in its own subprocess (one
   process holds one Ray) with one busy session per node: bench/stress_page.html at
   `--rate` events/s for `--seconds`, one viewer each, all pages released together.
   Delivered events/s (total and per session), latency p50/p99, and the CPU of each
   node's own processes (its session actors with their Chromium and Playwright, its
   streamers) as CPU-seconds per 1,000 events. The simulated nodes share this machine's
   two cores, so the totals say little about real nodes; the per-node cost is what
   projects.

The whole run holds the machine-wide benchmark lock (bench/lock.py). Nothing asserts on
time: one run on a shared 2-core machine, medians and ratios only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.lock import bench_lock
from bench.procs import OTHERS, ChromiumWatch, CpuMeter, _is_chromium, machine_info
from bench.stack import (
    RunningStack,
    bench_settings,
    bench_stack,
    free_port,
    ours,
    reap,
    until_routed_to_us,
)
from bench.stress_server import StressServer
from bench.stress_watch import time_first_snapshot, watch_run
from bench.tables import fmt, publish, spread, table
from serve.client import Client, ClientError

FULL = {"max_sessions": 16, "window_s": 20.0, "settle_s": 3.0, "starts": 10, "profile_reps": 5,
        "nodes": [1, 2, 3], "rate": 3000, "seconds": 5.0}
QUICK = {"max_sessions": 4, "window_s": 10.0, "settle_s": 3.0, "starts": 3, "profile_reps": 2,
         "nodes": [1, 2, 3], "rate": 3000, "seconds": 5.0}
TARGET_MB_PER_SESSION = 300
TARGET_WARM_START_MS = 1000
SATURATED_CPU_PCT = 180.0
EVENTS_SHARE = 0.5  # events/s per session below this share of one session alone: saturated
SLOWDOWN_LIMIT = 2.0  # reported: the workflow's active steps take twice their best time
MEMORY_SLOTS = 24
NODE_IP = "127.0.0.2"
DEFAULT_OUT = Path(__file__).parent / "results" / "cluster.json"
REPO = Path(__file__).resolve().parent.parent
_WORKER_IMPORTS = "import ray, pipeline.registry"  # what a new session actor's worker loads
_MB = 1024 * 1024
_LIVE = ("running", "idle")
_ENDED = ("stopped", "failed")


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


# -- processes of a session ---------------------------------------------------------------------

def actor_table() -> dict[str, dict[str, Any]]:
    """Live actors by name: pid and node, from the GCS actor table (no dashboard needed)."""
    from ray._private import state

    out = {}
    for info in state.actors(actor_state_name="ALIVE").values():
        if info.get("Name"):
            out[info["Name"]] = {"pid": int(info["Pid"]), "node_id": info["Address"]["NodeID"]}
    return out


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _part(proc: psutil.Process, actor_pid: int) -> str:
    """Which part of a session a process is."""
    if proc.pid == actor_pid:
        return "session actor (python)"
    cmdline = proc.cmdline()
    if _is_chromium(proc, cmdline):
        kind = next((a.split("=", 1)[1] for a in cmdline if a.startswith("--type=")), None)
        if kind is None:
            return "chromium browser process"
        return "chromium renderers" if kind == "renderer" else "chromium gpu, utility, zygote"
    if "node" in proc.name() or any("playwright" in part for part in cmdline):
        return "playwright driver (node)"
    return "other"


def session_processes(actors: dict[str, dict[str, Any]],
                      session_id: str) -> dict[int, tuple[str, psutil.Process, float]]:
    """pid -> (part, process, share) for one session: its actor's tree, and its share of
    the actors its node's sessions share, which is divided evenly among them: the
    streamer (`streamer:<node>`) and the shared Chromium (`browser:<node>` and its tree).
    A streamer of its own (`streamer:<session>`) counts whole."""
    out: dict[int, tuple[str, psutil.Process, float]] = {}
    session = actors.get(f"session:{session_id}")
    if session is None:
        return out
    for proc in _tree(session["pid"]):
        with contextlib.suppress(psutil.Error):
            out[proc.pid] = (_part(proc, session["pid"]), proc, 1.0)
    node = session["node_id"]
    sharing = sum(1 for name, actor in actors.items()
                  if name.startswith("session:") and actor["node_id"] == node)
    shared = [(actors.get(f"streamer:{session_id}"), "streamer actor (python)", 1.0, False),
              (actors.get(f"streamer:{node}"), "streamer actor (python)", 1.0 / sharing, False),
              (actors.get(f"browser:{node}"), "browser host actor (python)", 1.0 / sharing,
               True)]
    for actor, part, share, tree in shared:
        if actor is None:
            continue
        for proc in _tree(actor["pid"]) if tree else _tree(actor["pid"])[:1]:
            with contextlib.suppress(psutil.Error):
                kind = part if proc.pid == actor["pid"] else _part(proc, -1)
                if kind == "playwright driver (node)":  # the host's Playwright server
                    kind = "browser server (node)"
                out[proc.pid] = (kind, proc, share)
    return out


def session_memory(actors: dict[str, dict[str, Any]], session_id: str) -> dict[str, Any]:
    """Summed RSS, USS and PSS (MB) of a session's processes, in total and by part; shared
    processes count with the session's share."""
    parts: dict[str, dict[str, float]] = {}
    total = {"rss": 0.0, "uss": 0.0, "pss": 0.0, "processes": 0}
    for part, proc, share in session_processes(actors, session_id).values():
        try:
            mem = proc.memory_full_info()
        except psutil.Error:
            continue
        row = parts.setdefault(part, {"rss": 0.0, "uss": 0.0, "pss": 0.0, "processes": 0})
        for key in ("rss", "uss", "pss"):
            value = share * getattr(mem, key) / _MB
            row[key] += value
            total[key] += value
        row["processes"] += 1
        total["processes"] += 1
    rounded = {k: (round(v, 1) if k != "processes" else v) for k, v in total.items()}
    return {**rounded, "parts": {p: {k: (round(v, 1) if k != "processes" else v)
                                     for k, v in row.items()} for p, row in parts.items()}}


def process_shares(processes: dict[int, tuple[str, psutil.Process, float]]) -> dict[int, float]:
    return {pid: share for pid, (_, _, share) in processes.items()}


def cpu_seconds(shares: dict[int, float]) -> float:
    """CPU seconds of processes, each counted with its share."""
    total = 0.0
    for pid, share in shares.items():
        try:
            times = psutil.Process(pid).cpu_times()
            total += share * (times.user + times.system)
        except psutil.Error:
            continue
    return total


# -- the demo site, served by this process --------------------------------------------------------

@contextlib.contextmanager
def demo_site() -> Iterator[Any]:
    """The bundled demo site on its two loopback origins, on a thread of its own."""
    from pipeline.demo_site import DemoSite

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="demo-site", daemon=True)
    thread.start()
    site = DemoSite()
    asyncio.run_coroutine_threadsafe(site.start(), loop).result(30)
    try:
        yield site
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(site.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def looped_demo_steps(site_url: str) -> tuple[list[dict[str, Any]], int]:
    """The demo workflow repeated as often as a session's 1,000 steps allow; and its length."""
    from pipeline.demo_workflow import demo_steps

    one = [s.model_dump(mode="json") for s in demo_steps(site_url)]
    return one * (1000 // len(one)), len(one)


# -- 1. memory per session, sessions per node ------------------------------------------------------

async def _wait_state(api: Client, sid: str, states: tuple[str, ...],
                      timeout_s: float) -> dict[str, Any]:
    return await api.wait_for_state(sid, (*states, *_ENDED), timeout_s)


def _cycles(info: dict[str, Any], loop_len: int, since: float, until: float) -> list[float]:
    """Durations (s) of whole demo-workflow cycles of a session that ended inside the window."""
    steps = info.get("steps") or []
    out = []
    for first in range(0, len(steps) - loop_len + 1, loop_len):
        last = steps[first + loop_len - 1]
        start, end = steps[first].get("started_at"), last.get("ended_at")
        if start and end and since <= end <= until and last["state"] == "done":
            out.append(end - start)
    return out


def _step_slowdown(infos: dict[str, dict[str, Any]], loop_len: int, best: dict[int, float],
                   since: float, until: float) -> float | None:
    """Median, over the active steps (not `wait`) that ended inside the window, of each
    step's duration over the fastest this step of the cycle ever took (updates `best`)."""
    done: list[tuple[int, float]] = []
    for info in infos.values():
        for step in info.get("steps") or []:
            if (step["action"] != "wait" and step["state"] == "done" and step.get("started_at")
                    and step.get("ended_at")):
                key = step["index"] % loop_len
                took = max(step["ended_at"] - step["started_at"], 0.001)
                best[key] = min(best.get(key, took), took)
                if since <= step["ended_at"] <= until:
                    done.append((key, took))
    ratios = [took / best[key] for key, took in done]
    return round(statistics.median(ratios), 2) if ratios else None


async def memory_run(running: RunningStack, plan: dict[str, Any]) -> dict[str, Any]:
    stack, registry = running.stack, running.registry
    meter = CpuMeter()
    rows: list[dict[str, Any]] = []
    sessions: list[str] = []
    stop_reason = f"cap of {plan['max_sessions']} sessions"
    best: dict[int, float] = {}  # fastest duration seen of each active step of the cycle
    with demo_site() as site:
        steps, loop_len = looped_demo_steps(site.url)
        async with Client(stack.base_url, timeout=90) as api:
            await until_routed_to_us(api, registry, f"{running.site.url}/simple.html")
            await asyncio.sleep(2.0)
            available_0 = psutil.virtual_memory().available / _MB
            try:
                for n in range(1, plan["max_sessions"] + 1):
                    _log(f"memory: session {n}/{plan['max_sessions']} …")
                    t0 = time.time()
                    sid = (await api.create_session(f"{site.url}/index.html", steps=steps,
                                                    name=f"mem-{n}", max_duration_s=1800))["id"]
                    if not await ours(registry, sid):
                        raise RuntimeError(f"POST /sessions reached another stack ({sid})")
                    sessions.append(sid)
                    info = await _wait_state(api, sid, _LIVE, 120)
                    start_s = time.time() - t0
                    running.chromium.scan()
                    await asyncio.sleep(plan["settle_s"])

                    before = {i["id"]: i for i in await api.sessions() if i["id"] in sessions}
                    actors = actor_table()
                    own = {s: process_shares(session_processes(actors, s)) for s in sessions}
                    w0, cpu0 = time.time(), meter.snapshot()
                    own0 = {s: cpu_seconds(p) for s, p in own.items()}
                    await asyncio.sleep(plan["window_s"])
                    own1 = {s: cpu_seconds(p) for s, p in own.items()}
                    cpu = meter.usage(cpu0, meter.snapshot(), time.time() - w0)
                    w1 = time.time()
                    session_cpu = [100.0 * (own1[s] - own0[s]) / (w1 - w0) for s in sessions]
                    after = {i["id"]: i for i in await api.sessions() if i["id"] in sessions}
                    actors = actor_table()
                    memory = {sid_: session_memory(actors, sid_) for sid_ in sessions}
                    running.chromium.scan()

                    working = [s for s in sessions
                               if before.get(s, {}).get("state") == "running"
                               and after.get(s, {}).get("state") == "running"]
                    rates = [(after[s]["events"] - before[s]["events"]) / (w1 - w0)
                             for s in working]
                    failed = [f"{s}: {after[s].get('error')}" for s in sessions
                              if any(st["state"] == "failed"
                                     for st in after.get(s, {}).get("steps", []))
                              or after.get(s, {}).get("state") == "failed"]
                    cycles = [c for s in sessions if s in after
                              for c in _cycles(after[s], loop_len, w0, w1)]
                    slowdown = _step_slowdown(after, loop_len, best, w0, w1)
                    available = psutil.virtual_memory().available / _MB
                    ours_pct = round(sum(v for g, v in cpu.items() if g != OTHERS), 1)
                    row = {
                        "sessions": n, "session_id": sid, "start_s": round(start_s, 2),
                        "workflows_running": len(working),
                        "events_per_s_per_session": _median(rates),
                        "events_per_s_total": round(sum(rates), 1),
                        "cycle_s_median": _median(cycles), "cycles_completed": len(cycles),
                        "active_step_slowdown": slowdown,
                        "failed": failed,
                        "cpu_machine_busy_pct": round(sum(cpu.values()), 1),
                        "cpu_ours_pct": ours_pct, "cpu_pct_of_one_core": cpu,
                        # a session's own processes (actor, Playwright, Chromium, streamer)
                        "cpu_per_session_pct_median": _median(session_cpu),
                        "cpu_sessions_total_pct": round(sum(session_cpu), 1),
                        "available_mb": round(available),
                        "available_drop_mb_per_session": round((available_0 - available) / n, 1),
                        "new_session_mb": {k: memory[sid][k] for k in ("rss", "uss", "pss")},
                        "per_session_median_mb": {
                            k: _median([m[k] for m in memory.values() if m["processes"]])
                            for k in ("rss", "uss", "pss")},
                        "memory": memory,
                        "node_state": info.get("state"),
                    }
                    rows.append(row)
                    baseline = rows[0]["events_per_s_per_session"]
                    reasons = []
                    if ours_pct >= SATURATED_CPU_PCT:
                        reasons.append(f"our CPU {ours_pct} % >= {SATURATED_CPU_PCT:.0f} %")
                    if failed:
                        reasons.append(f"workflow steps failed ({len(failed)} sessions)")
                    rate = row["events_per_s_per_session"]
                    slow_events = bool(baseline and rate is not None
                                       and rate < EVENTS_SHARE * baseline)
                    if slow_events:
                        reasons.append(f"events/s per session {rate} < half of {baseline}")
                    row["healthy"] = not reasons
                    row["saturated"] = reasons
                    # Sustained: two readings in a row (the machine is shared; one window
                    # can catch someone else's burst).
                    if reasons and len(rows) >= 2 and rows[-2]["saturated"]:
                        stop_reason = "; ".join(reasons) + " (two windows in a row)"
                        break
            finally:
                await asyncio.gather(*(api.stop_session(s) for s in sessions),
                                     return_exceptions=True)
    healthy = [r["sessions"] for r in rows if r["healthy"]]
    # The last healthy reading before the two unhealthy ones that ended the run.
    held = max((r["sessions"] for r in rows if r["healthy"]), default=0)
    well = [r for r in rows if r["healthy"]]
    per_session = [m for r in well for m in r["memory"].values() if m["processes"]]
    return {
        "available_mb_before": round(available_0), "loop_steps": loop_len, "rows": rows,
        "stop_reason": stop_reason, "held_well": held, "healthy_rows": healthy,
        "active_steps_2x_slower_first_at": next(
            (r["sessions"] for r in rows if (r["active_step_slowdown"] or 0) >= SLOWDOWN_LIMIT),
            None),
        "machine_busy_180_first_at": next((r["sessions"] for r in rows
                                          if r["cpu_machine_busy_pct"] >= SATURATED_CPU_PCT),
                                         None),
        # every per-session reading while the node was healthy
        "per_session_mb": {k: spread([m[k] for m in per_session]) | {
            "median": _median([m[k] for m in per_session])} for k in ("rss", "uss", "pss")},
        "projection": _projection(rows, well, available_0),
        "breakdown_first_session_mb": rows[0]["memory"][rows[0]["session_id"]]["parts"]
        if rows else {},
        "breakdown_last_healthy_median_mb": _breakdown_median(well[-1]) if well else {},
    }


def _projection(rows: list[dict[str, Any]], well: list[dict[str, Any]],
                available_mb: float) -> dict[str, Any]:
    """Sessions a dedicated node like this one would hold, by CPU and by memory, from what
    the healthy readings cost: our CPU outside the sessions' own processes is the stack's
    fixed overhead (Ray, Serve, gateway, registry, this client)."""
    if not well:
        return {}
    per_cpu = _median([r["cpu_per_session_pct_median"] for r in well
                       if r["cpu_per_session_pct_median"] is not None])
    overhead = _median([r["cpu_ours_pct"] - r["cpu_sessions_total_pct"] for r in well])
    uss = _median([m["uss"] for r in well for m in r["memory"].values() if m["processes"]])
    pss = _median([m["pss"] for r in well for m in r["memory"].values() if m["processes"]])
    cores = os.cpu_count() or 1
    budget = SATURATED_CPU_PCT / 200.0 * 100.0 * cores  # 90 % of every core
    return {
        "cpu_per_session_pct": per_cpu, "cpu_fixed_overhead_pct": overhead,
        "sessions_by_cpu": int((budget - (overhead or 0.0)) // per_cpu) if per_cpu else None,
        "uss_per_session_mb": uss, "pss_per_session_mb": pss,
        "sessions_by_memory_uss": int(available_mb // uss) if uss else None,
        "sessions_by_memory_pss": int(available_mb // pss) if pss else None,
        "cpu_budget_pct": budget, "available_mb": round(available_mb),
    }


def _breakdown_median(row: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    parts: dict[str, dict[str, list[float]]] = {}
    for mem in row["memory"].values():
        for part, values in mem["parts"].items():
            for key in ("rss", "uss", "pss"):
                parts.setdefault(part, {}).setdefault(key, []).append(values[key])
    return {p: {k: _median(v) for k, v in keys.items()} for p, keys in parts.items()}


# -- 2. session start ------------------------------------------------------------------------------

_START_KEYS = ("post_ms", "actor_start_ms", "running_ms", "snapshot_taken_ms",
               "snapshot_ingested_ms", "welcome_ms", "first_frame_ms", "full_snapshot_ms")


async def _warm_count(api: Client) -> int:
    pool = await api.pool()
    return sum(n.get("warm", 0) for n in pool.get("nodes", []))


async def _until_warm(api: Client, timeout_s: float) -> float | None:
    """Seconds until /pool shows a warm browser ready; None if none within `timeout_s`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if await _warm_count(api) >= 1:
            return round(time.monotonic() - t0, 2)
        await asyncio.sleep(0.25)
    return None


async def _poll_running(api: Client, sid: str, t0: float, out: dict[str, Any]) -> None:
    """Notes when GET /sessions/{id} first shows the session running (polled every 100 ms)."""
    while True:
        with contextlib.suppress(ClientError):
            state = (await api.session(sid)).get("state")
            if state in _LIVE:
                out["running_ms"] = round(time.time() * 1000.0 - t0, 1)
                return
            if state in _ENDED:
                return
        await asyncio.sleep(0.1)


async def start_once(api: Client, running: RunningStack) -> dict[str, Any]:
    polled: dict[str, Any] = {}
    t0 = time.time() * 1000.0
    body = await api.create_session(f"{running.site.url}/simple.html", name="bench-start",
                                    max_duration_s=120)
    post_ms = time.time() * 1000.0 - t0
    sid = body["id"]
    poller = asyncio.create_task(_poll_running(api, sid, t0, polled))
    try:
        first = await time_first_snapshot(api.stream_url(sid), t0, 60.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(poller), 10)
        if not await ours(running.registry, sid):
            raise RuntimeError(f"POST /sessions reached another stack (session {sid})")
        running.chromium.scan()
        info = await api.session(sid)
    finally:
        poller.cancel()
        await api.stop_session(sid)
    started = info.get("started_at")
    out = {"session_id": sid, "post_ms": round(post_ms, 1),
           "actor_start_ms": round(started * 1000.0 - t0, 1) if started else None,
           "running_ms": polled.get("running_ms"),
           "queued_at_post": body.get("queue_position"),
           "welcome_ms": first.welcome_ms, "first_frame_ms": first.first_frame_ms,
           "snapshot_taken_ms": first.snapshot_taken_ms,
           "snapshot_ingested_ms": first.snapshot_ingested_ms,
           "full_snapshot_ms": first.full_snapshot_ms, "error": first.error}
    return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in out.items()}


START_VARIANTS = {
    "warm": "warm_browsers=1 (the default; the next warm browser launches beside the start)",
    "warm_alone": "warm_browsers=1, 1 browser slot (nothing launches beside the start)",
    "cold": "warm_browsers=0 (every start launches its browser)",
}


async def start_runs(running: RunningStack, plan: dict[str, Any], warm: int) -> dict[str, Any]:
    runs = []
    async with Client(running.stack.base_url, timeout=90) as api:
        await until_routed_to_us(api, running.registry, f"{running.site.url}/simple.html")
        for index in range(plan["starts"]):
            _log(f"start (warm_browsers={warm}) {index + 1}/{plan['starts']} …")
            waited = await _until_warm(api, 60) if warm else None
            await asyncio.sleep(1.0)  # the previous session's Chromium has closed
            ready = await _warm_count(api)
            run = await start_once(api, running)
            runs.append({**run, "warm_ready_before_post": ready, "waited_for_warm_s": waited})
    done = [r["full_snapshot_ms"] for r in runs if r["full_snapshot_ms"] is not None]
    return {
        "warm_browsers": warm, "browser_slots": running.settings.browser_slots, "runs": runs,
        "median": {k: _median([r[k] for r in runs if r.get(k) is not None])
                   for k in _START_KEYS},
        "full_snapshot_ms": {"median": _median(done), "min": min(done, default=None),
                             "max": max(done, default=None)},
        "errors": [r["error"] for r in runs if r["error"]],
    }


async def _open_timed(browser: Any, script: str, url: str) -> dict[str, float]:
    """Opens a recorded page the way a session does (pipeline/session_browser.py `open_page`, then
    `goto`), timing each phase in ms, until the first FullSnapshot reaches the binding."""
    import orjson

    from pipeline.recorder import PageRecorder

    snapshot: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()

    def on_batch(batch: Any) -> None:
        if not snapshot.done() and '"type":2' in batch.text:
            taken = next(e["timestamp"] for e in orjson.loads(batch.text) if e["type"] == 2)
            snapshot.set_result((time.time() * 1000.0, taken))

    marks = {"t0": time.time() * 1000.0}
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        marks["context"] = time.time() * 1000.0
        page = await context.new_page()
        marks["page"] = time.time() * 1000.0
        recorder = PageRecorder(script, on_batch)
        await recorder.install(context)
        await recorder.attach(context, page)
        marks["recorder"] = time.time() * 1000.0
        await page.goto(url, wait_until="load", timeout=30_000)
        marks["load"] = time.time() * 1000.0
        arrived, taken = await asyncio.wait_for(snapshot, 30)
    finally:
        await context.close()
    return {"new_context_ms": marks["context"] - marks["t0"],
            "new_page_ms": marks["page"] - marks["context"],
            "recorder_attach_ms": marks["recorder"] - marks["page"],
            "goto_load_ms": marks["load"] - marks["recorder"],
            "snapshot_taken_ms": taken - marks["t0"],
            "snapshot_at_binding_ms": arrived - marks["t0"]}


async def _launch_beside() -> tuple[Any, Any, asyncio.subprocess.Process]:
    """What re-warming does next to a warm session's start: a new Ray worker's imports
    (approximated by a Python process importing them) and a Playwright + Chromium launch."""
    from playwright.async_api import async_playwright

    from pipeline.browser import launch_chromium
    from pipeline.config import Settings

    worker = await asyncio.create_subprocess_exec(sys.executable, "-c", _WORKER_IMPORTS,
                                                  cwd=REPO)
    playwright = await async_playwright().start()
    return playwright, await launch_chromium(playwright, Settings()), worker


async def profile_start(url: str, reps: int, chromium: ChromiumWatch) -> dict[str, Any]:
    """Where a session's start goes, without Ray: Python worker imports, Playwright start,
    Chromium launch, then each step of opening a recorded page on a running browser (what a
    warm start does), alone and with a browser launching beside it (re-warming)."""
    from playwright.async_api import async_playwright

    from pipeline.browser import launch_chromium
    from pipeline.config import Settings
    from pipeline.recorder import init_script

    settings = Settings()
    script = init_script(settings)
    imports = []
    for _ in range(reps):
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _WORKER_IMPORTS,
                                                    cwd=REPO)
        await proc.wait()
        imports.append((time.perf_counter() - t0) * 1000.0)
    cold, alone, beside = [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        playwright = await async_playwright().start()
        t1 = time.perf_counter()
        browser = await launch_chromium(playwright, settings)
        t2 = time.perf_counter()
        chromium.scan()
        try:
            cold.append({"playwright_start_ms": (t1 - t0) * 1000.0,
                         "chromium_launch_ms": (t2 - t1) * 1000.0,
                         **await _open_timed(browser, script, url)})
            await asyncio.sleep(0.5)
            alone.append(await _open_timed(browser, script, url))
            await asyncio.sleep(0.5)
            other = asyncio.create_task(_launch_beside())
            beside.append(await _open_timed(browser, script, url))
            other_pw, other_browser, worker = await other
            chromium.scan()
            await other_browser.close()
            await other_pw.stop()
            await asyncio.wait_for(worker.wait(), 30)
        finally:
            await browser.close()
            await playwright.stop()
        await asyncio.sleep(1.0)

    def medians(rows: list[dict[str, float]]) -> dict[str, float | None]:
        return {k: _median([r[k] for r in rows]) for k in rows[0]} if rows else {}

    return {"reps": reps, "python_worker_imports_ms": _median(imports),
            "first_page_after_launch": medians(cold), "warm_page_alone": medians(alone),
            "warm_page_beside_launch": medians(beside),
            "runs": {"first_page_after_launch": cold, "warm_page_alone": alone,
                     "warm_page_beside_launch": beside}}


# -- 3. nodes 1 -> 3 (one subprocess per cluster size) ---------------------------------------------

async def _scale_sessions(base: str, site: Any, registry: Any, nodes: int,
                          rate: int, seconds: float, chromium: ChromiumWatch) -> dict[str, Any]:
    runs = [uuid.uuid4().hex[:10] for _ in range(nodes)]
    async with Client(base, timeout=90) as api:
        await until_routed_to_us(api, registry, f"{site.url}/simple.html")
        sids = []
        for i, run in enumerate(runs):
            sids.append((await api.create_session(
                f"{site.url}/stress.html?rate={rate}&seconds={seconds:g}&run={run}",
                name=f"scale-{nodes}-{i}", max_duration_s=int(seconds) + 180))["id"])
            if not await ours(registry, sids[-1]):
                raise RuntimeError(f"POST /sessions reached another stack ({sids[-1]})")
        try:
            infos = [await _wait_state(api, sid, _LIVE, 120) for sid in sids]
            chromium.scan()
            node_of = {info["id"]: info["node_id"] for info in infos}
            actors = actor_table()
            node_pids: dict[str, dict[int, float]] = {}
            for sid in sids:
                shares = node_pids.setdefault(node_of[sid], {})
                for pid, share in process_shares(session_processes(actors, sid)).items():
                    shares[pid] = shares.get(pid, 0.0) + share
            meter, window, attached = CpuMeter(), {}, set()

            def on_attached(run: str) -> None:
                attached.add(run)
                if len(attached) == len(runs):  # every viewer is in place: go, all at once
                    window["cpu"], window["t0"] = meter.snapshot(), time.monotonic()
                    window["nodes"] = {n: cpu_seconds(p) for n, p in node_pids.items()}
                    for r in runs:
                        site.release(r)

            seen = await asyncio.gather(*(
                watch_run(api.stream_url(sid), lambda r=run: on_attached(r),
                          seconds + 90) for sid, run in zip(sids, runs, strict=True)))
            wall = time.monotonic() - window["t0"] if "t0" in window else 0.0
            cpu = meter.usage(window["cpu"], meter.snapshot(), wall) if wall else {}
            node_cpu = ({n: cpu_seconds(p) - window["nodes"][n] for n, p in node_pids.items()}
                        if "nodes" in window else {})
            pages = [s.done or await site.report(r, 5.0) or {} for s, r in zip(seen, runs,
                                                                                strict=True)]
        finally:
            await asyncio.gather(*(api.stop_session(s) for s in sids),
                                 return_exceptions=True)
    per_session = []
    for sid, s, page in zip(sids, seen, pages, strict=True):
        sent = int(page.get("sent", 0))
        span = ((s.last_arrival - s.first_t) / 1000.0
                if s.last_arrival is not None and s.first_t is not None else 0.0)
        per_session.append({
            "session_id": sid, "node_id": node_of[sid], "sent": sent,
            "page_achieved_per_s": round(float(page.get("achieved", 0.0)), 1),
            "received": len(s.latency_ms),
            "lost": sum(1 for i in range(sent) if i not in s.latency_ms),
            "gaps": s.gaps, "resets": s.resets, "error": s.error,
            "delivered_per_s": round(len(s.latency_ms) / span, 1) if span > 0 else 0.0,
            "latency_ms": spread(list(s.latency_ms.values()))})
    firsts = [s.first_t for s in seen if s.first_t is not None]
    lasts = [s.last_arrival for s in seen if s.last_arrival is not None]
    span = (max(lasts) - min(firsts)) / 1000.0 if firsts and lasts else 0.0
    received = sum(p["received"] for p in per_session)
    latencies = [v for s in seen for v in s.latency_ms.values()]
    nodes_out = []
    for node, secs in node_cpu.items():
        events = sum(p["received"] for p in per_session if p["node_id"] == node)
        nodes_out.append({"node_id": node, "sessions": sum(1 for n in node_of.values()
                                                            if n == node),
                          "events": events, "cpu_s": round(secs, 2),
                          "cpu_pct_of_one_core": round(100.0 * secs / wall, 1) if wall else None,
                          "cpu_s_per_1000_events": round(1000.0 * secs / events, 3)
                          if events else None})
    ours_pct = round(sum(v for g, v in cpu.items() if g != OTHERS), 1)
    node_pct = sum(n["cpu_pct_of_one_core"] or 0.0 for n in nodes_out)
    return {
        "nodes": nodes, "rate": rate, "seconds": seconds, "window_s": round(wall, 2),
        "sessions": per_session, "distinct_nodes_used": len(set(node_of.values())),
        "delivered_per_s_total": round(received / span, 1) if span > 0 else 0.0,
        "delivered_per_s_per_session": _median([p["delivered_per_s"] for p in per_session]),
        "lost_total": sum(p["lost"] for p in per_session),
        "latency_ms": spread(latencies),
        "per_node": nodes_out,
        "cpu_s_per_1000_events_node_median": _median(
            [n["cpu_s_per_1000_events"] for n in nodes_out
             if n["cpu_s_per_1000_events"] is not None]),
        "cpu_pct_of_one_core": cpu, "cpu_ours_pct": ours_pct,
        "cpu_machine_busy_pct": round(sum(cpu.values()), 1),
        # what is not a node's session work: gateway, HAProxy, Serve, Ray, registry, client
        "cpu_rest_pct": round(ours_pct - node_pct, 1),
        "cpu_s_per_1000_events_all_ours": round(10.0 * ours_pct * wall / received, 3)
        if received else None,
        "cpu_s_per_1000_events_rest": round(10.0 * (ours_pct - node_pct) * wall / received, 3)
        if received else None,
    }


def scale_child(nodes: int, rate: int, seconds: float, out: Path) -> None:
    """One cluster size, in this (sub)process: start the cluster, measure, tear it down."""
    import ray
    from ray.cluster_utils import Cluster

    from pipeline.actors import REGISTRY_NAME
    from pipeline.config import Settings
    from serve.app import deploy_gateway, ray_environment, shutdown

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    settings = Settings(port=free_port(), proxy_location="HeadOnly", browser_slots=2,
                        warm_browsers=0, ended_retention_s=15)
    os.environ.update(ray_environment(settings))
    chromium = ChromiumWatch()
    result: dict[str, Any] = {}
    t0 = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args={
        "node_ip_address": NODE_IP, "resources": {"browser": 2}, "num_cpus": 1,
        "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(node_ip_address=NODE_IP, resources={"browser": 2}, num_cpus=1)
        ray.init(address=cluster.address, namespace=settings.namespace, log_to_driver=False)
        cluster.wait_for_nodes()
        deploy_gateway(settings)
        registry = ray.get_actor(REGISTRY_NAME, namespace=settings.namespace)
        startup = round(time.monotonic() - t0, 1)
        with StressServer() as site:
            result = asyncio.run(_scale_sessions(
                f"http://127.0.0.1:{settings.port}", site,
                registry, nodes, rate, seconds, chromium))
        head = cluster.head_node.node_id
        names = {head: "head", **{n.node_id: f"worker {i + 1}"
                                  for i, n in enumerate(cluster.worker_nodes)}}
        for row in result["per_node"]:
            row["node"] = names.get(row["node_id"], row["node_id"][:8])
        result["cluster_startup_s"] = startup
    except Exception as exc:
        result = {"nodes": nodes, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        raise
    finally:
        try:
            shutdown(settings)
        finally:
            cluster.shutdown()
            result["chromium_left_running"] = reap(chromium)
            out.write_text(json.dumps(result, indent=2) + "\n")


def run_scale_child(nodes: int, plan: dict[str, Any]) -> dict[str, Any]:
    """Runs one cluster size in a subprocess (its own session, so its Ray is its own)."""
    with tempfile.TemporaryDirectory(prefix="rrstream-cluster-") as tmp:
        out = Path(tmp) / "result.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.cluster", "--scale-child", str(nodes),
             "--rate", str(plan["rate"]), "--seconds", str(plan["seconds"]),
             "--child-out", str(out)],
            cwd=REPO, start_new_session=True)
        try:
            code = proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            _log(f"scale child ({nodes} nodes) timed out; stopping it (pid {proc.pid})")
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its own process group only
                code = proc.wait()
        if out.exists():
            return {**json.loads(out.read_text()), "exit_code": code}
        return {"nodes": nodes, "error": f"child exited {code} without a result",
                "exit_code": code}


# -- report --------------------------------------------------------------------------------------

def _met(value: float | None, target: float) -> str:
    if value is None:
        return "not measured"
    return "met" if value < target else "NOT met"


def report(result: dict[str, Any]) -> str:
    machine = result["machine"]
    out = [f"{machine['cpu_count']} cores, {machine['memory_gb']} GB, load "
           f"{machine['load_avg_1m_at_start']} at start", ""]
    memory = result.get("memory")
    if memory:
        out += [f"1. Memory per session (demo workflow looped, {memory['loop_steps']} steps a "
                f"cycle; window {result['plan']['window_s']:g} s after each start; MB)", table(
            ["n", "start s", "new RSS", "new PSS", "new USS", "med RSS", "med PSS", "med USS",
             "avail MB", "drop/sess", "busy %", "ours %", "sess CPU %", "wf run", "ev/s/sess",
             "cycle s", "slowdown", "fail", "ok"],
            [[r["sessions"], r["start_s"], r["new_session_mb"]["rss"],
              r["new_session_mb"]["pss"], r["new_session_mb"]["uss"],
              r["per_session_median_mb"]["rss"], r["per_session_median_mb"]["pss"],
              r["per_session_median_mb"]["uss"], r["available_mb"],
              r["available_drop_mb_per_session"], r["cpu_machine_busy_pct"], r["cpu_ours_pct"],
              r["cpu_per_session_pct_median"], r["workflows_running"], r["events_per_s_per_session"], r["cycle_s_median"],
              r["active_step_slowdown"], len(r["failed"]), "yes" if r["healthy"] else "NO"]
             for r in memory["rows"]]), ""]
        parts = memory["breakdown_last_healthy_median_mb"]
        if parts:
            out += ["Per-session memory by part (median over sessions, last healthy step; MB)",
                    table(["part", "RSS", "PSS", "USS"],
                          [[p, v["rss"], v["pss"], v["uss"]] for p, v in
                           sorted(parts.items(), key=lambda kv: -(kv[1]["pss"] or 0))]
                          + [["= session", *(round(sum(v[k] or 0 for v in parts.values()), 1)
                                             for k in ("rss", "pss", "uss"))]]), ""]
        ps = memory["per_session_mb"]
        out += [f"Node held {memory['held_well']} sessions with the workflow running well; "
                f"stopped: {memory['stop_reason']}. Machine busy (with other users) >= "
                f"{SATURATED_CPU_PCT:.0f} % first at: {memory['machine_busy_180_first_at']}; "
                f"active steps >= {SLOWDOWN_LIMIT:g}x their best time first at: "
                f"{memory['active_steps_2x_slower_first_at']}.",
                f"Per session (every reading while healthy): PSS median "
                f"{ps['pss']['median']} MB, USS {ps['uss']['median']}, RSS "
                f"{ps['rss']['median']}; target < {TARGET_MB_PER_SESSION} MB: "
                f"PSS {_met(ps['pss']['median'], TARGET_MB_PER_SESSION)}, "
                f"RSS {_met(ps['rss']['median'], TARGET_MB_PER_SESSION)}"]
        proj = memory["projection"]
        if proj:
            out += [f"A dedicated node like this one ({proj['available_mb']} MB free, "
                    f"{proj['cpu_budget_pct']:.0f} % CPU budget): a session's own processes take "
                    f"{proj['cpu_per_session_pct']} % of a core, the stack "
                    f"{proj['cpu_fixed_overhead_pct']} % -> {proj['sessions_by_cpu']} sessions "
                    f"by CPU; {proj['sessions_by_memory_uss']} by memory (USS), "
                    f"{proj['sessions_by_memory_pss']} (PSS)"]
        out.append("")
    starts = result.get("start") or {}
    for key, label in START_VARIANTS.items():
        s = starts.get(key)
        if not s:
            continue
        out += [f"2. Session start, {label} (ms from just before POST /sessions)", table(
            ["run", "warm", "POST", "actor start", "running", "snapshot taken", "ingested",
             "welcome", "first frame", "FullSnapshot"],
            [[i + 1, r["warm_ready_before_post"], r["post_ms"], r["actor_start_ms"],
              r["running_ms"], r["snapshot_taken_ms"], r["snapshot_ingested_ms"],
              r["welcome_ms"], r["first_frame_ms"], r["full_snapshot_ms"] or r["error"]]
             for i, r in enumerate(s["runs"])]
            + [["median", "", *(s["median"][k] for k in _START_KEYS)]]),
            f"FullSnapshot median {s['full_snapshot_ms']['median']} ms, min "
            f"{s['full_snapshot_ms']['min']}, max {s['full_snapshot_ms']['max']}", ""]
    prof = starts.get("profile")
    if prof:
        phases = ["playwright_start_ms", "chromium_launch_ms", "new_context_ms", "new_page_ms",
                  "recorder_attach_ms", "goto_load_ms", "snapshot_taken_ms",
                  "snapshot_at_binding_ms"]
        cols = [("first page after launch", prof["first_page_after_launch"]),
                ("warm page, alone", prof["warm_page_alone"]),
                ("warm page, browser launching beside", prof["warm_page_beside_launch"])]
        out += [f"Start phases without Ray (median of {prof['reps']}; ms; page steps from "
                f"new_context): Python worker imports {prof['python_worker_imports_ms']} ms",
                table(["phase", *(c for c, _ in cols)],
                      [[p.removesuffix("_ms"), *(v.get(p) for _, v in cols)] for p in phases]),
                ""]
    if starts.get("warm"):
        out += [f"Warm start target < {TARGET_WARM_START_MS} ms median: "
                f"{_met(starts['warm']['full_snapshot_ms']['median'], TARGET_WARM_START_MS)}", ""]
    scale = result.get("scale")
    if scale:
        rows = [s for s in scale if "error" not in s]
        out += [f"3. Nodes 1 -> 3 (one stress session per node, {result['plan']['rate']:,} "
                f"events/s for {result['plan']['seconds']:g} s each)", table(
            ["nodes", "used", "delivered/s", "per session", "lost", "lat p50", "lat p99",
             "node CPU % (each)", "CPU-s/1k ev per node", "rest %", "rest CPU-s/1k",
             "ours %", "busy %", "CPU-s/1k all"],
            [[s["nodes"], s["distinct_nodes_used"], fmt(s["delivered_per_s_total"]),
              fmt(s["delivered_per_s_per_session"]), s["lost_total"], s["latency_ms"]["p50"],
              s["latency_ms"]["p99"],
              " / ".join(str(n["cpu_pct_of_one_core"]) for n in s["per_node"]),
              " / ".join(str(n["cpu_s_per_1000_events"]) for n in s["per_node"]),
              s["cpu_rest_pct"], s["cpu_s_per_1000_events_rest"], s["cpu_ours_pct"],
              s["cpu_machine_busy_pct"],
              s["cpu_s_per_1000_events_all_ours"]] for s in rows]),
            "(latency ms; CPU % of one core over the emitting window; 'rest' = gateway, "
            "HAProxy, Serve, Ray, registry, client)"]
        out += [f"   {s['nodes']} nodes: ERROR {s['error']}" for s in scale if "error" in s]
        out.append("")
    return "\n".join(out)


# -- main ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="4 sessions, 10 s windows, 3 starts each")
    parser.add_argument("--parts", default="memory,start,scale",
                        help="which measurements, comma-separated: memory,start,scale")
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    parser.add_argument("--max-sessions", type=int, help="memory: cap on sessions")
    parser.add_argument("--window", type=float, help="memory: seconds measured per step")
    parser.add_argument("--starts", type=int, help="start: starts per setting")
    parser.add_argument("--nodes", type=lambda v: [int(n) for n in v.split(",")],
                        help="scale: cluster sizes, e.g. 1,2,3")
    parser.add_argument("--rate", type=int, help="scale: events/s per stress session")
    parser.add_argument("--seconds", type=float, help="scale: seconds each page emits")
    parser.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    for key, name in (("max_sessions", "max_sessions"), ("window_s", "window"),
                      ("starts", "starts"), ("nodes", "nodes"), ("rate", "rate"),
                      ("seconds", "seconds")):
        if getattr(args, name) is not None:
            plan[key] = getattr(args, name)
    if args.scale_child:  # a subprocess of a run that holds the lock
        scale_child(args.scale_child, plan["rate"], plan["seconds"], args.child_out)
        return 0
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if parts - {"memory", "start", "scale"}:
        parser.error("--parts takes memory, start, scale")
    out_path = args.out or DEFAULT_OUT.with_name(f"cluster{'_quick' * args.quick}.json")

    result: dict[str, Any] = {"benchmark": "cluster", "quick": args.quick, "plan": plan,
                              "parts": sorted(parts), "chromium_left_running": {}}
    with bench_lock("bench.cluster"):
        result["machine"] = machine_info()
        result["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
        if parts & {"memory", "start"}:
            # One stack with no warm browser: cold starts, then memory per session.
            settings = bench_settings(browser_slots=MEMORY_SLOTS, warm_browsers=0)
            with bench_stack(settings) as running:
                if "start" in parts:
                    cold = asyncio.run(start_runs(running, plan, warm=0))
                    result.setdefault("start", {})["cold"] = cold
                if "memory" in parts:
                    result["memory"] = asyncio.run(memory_run(running, plan))
            result["chromium_left_running"]["memory_and_cold"] = running.leftovers
        if "start" in parts:
            for key, slots in (("warm", None), ("warm_alone", 1)):
                settings = bench_settings(warm_browsers=1, browser_slots=slots)
                with bench_stack(settings) as running:
                    result.setdefault("start", {})[key] = asyncio.run(
                        start_runs(running, plan, warm=1))
                result["chromium_left_running"][key] = running.leftovers
            _log("start: profiling the phases of a start, without Ray …")
            watch = ChromiumWatch()
            with StressServer() as site:
                try:
                    result["start"]["profile"] = asyncio.run(profile_start(
                        f"{site.url}/simple.html", plan["profile_reps"], watch))
                finally:
                    result["chromium_left_running"]["profile"] = reap(watch)
        if "scale" in parts:
            result["scale"] = []
            for nodes in plan["nodes"]:
                _log(f"scale: {nodes} node(s) …")
                result["scale"].append(run_scale_child(nodes, plan))
    publish(report(result), result, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
