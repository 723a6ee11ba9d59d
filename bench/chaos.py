"""Chaos: kill parts of a running stack at random while sessions stream to viewers.

    .venv/bin/python -m bench.chaos [--minutes 3] [--sessions 4] [--viewers 10]
                                    [--interval 12] [--replicas 2] [--seed N] [--out FILE]

Starts the real stack (bench/stack.py: embedded Ray on loopback, the Serve gateway with
`--replicas` replicas behind HAProxy), opens `--sessions` sessions on a live dashboard
page (bench/busy_page.html: a few nodes change 20 times a second, so a healthy stream
never pauses) and `--viewers` protocol-v1 viewers on each (serve/client `Viewer` with
`reconnect=True`, as the web viewer behaves). Then, every `--interval` seconds, it kills
one part picked at random (the seed is printed and kept), each actor death caused one of
two ways at random, SIGKILL of its worker process or `ray.kill(handle, no_restart=False)`:

| kind | what is killed |
| --- | --- |
| chromium | the node's shared Chromium (SIGKILL of its browser process) |
| renderer | one renderer process of that Chromium (SIGKILL) |
| streamer | the node's streamer actor |
| session | one session actor |
| replica | one gateway replica |
| registry | the registry actor |

Measured per fault: its *recovery*. For a streamer or a session actor (whose sessions get a
new stream) it is the time from the kill until every viewer of the sessions concerned got
the new stream's RESET frame (`reset: restart`, the page shown again); for the others,
until every viewer again got a frame whose newest event the page stamped after the kill
(the stream flows again); for the registry also until `GET /sessions` lists every session
again. The kinds come in shuffled rounds, so each is injected about as often. At the end: events
lost outside documented resets (sequence gaps without a RESET, undecodable frames: must
be 0), sessions failed (must be 0 except by the crash budget, RRSTREAM_MAX_BROWSER_CRASHES
within RRSTREAM_CRASH_WINDOW_S), and what is left over: session actors once every session
is stopped, then Chromium processes and browser temp directories once the stack is down
(all must be 0). Prints a table and writes `bench/results/chaos.json`. Bounded: it stops
after `--minutes` plus teardown. Nothing asserts on time; it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.lock import bench_lock
from bench.procs import machine_info
from bench.stack import RunningStack, bench_settings, bench_stack, until_routed_to_us
from bench.tables import publish, table
from pipeline.browser_dirs import browsers_root
from serve.client import Client, Frame, Viewer

KINDS = ("chromium", "renderer", "streamer", "session", "replica", "registry")
RESULTS = Path(__file__).parent / "results"
_RECOVERY_LIMIT_S = 60.0


@dataclass(slots=True)
class Fault:
    kind: str
    how: str
    at_ms: float
    target: str
    restarted: list[str] = field(default_factory=list)  # sessions that get a new stream
    recovery_s: float | None = None  # every viewer flowing again
    listed_s: float | None = None  # registry only: every session listed again
    error: str | None = None


@dataclass(slots=True)
class Watched:
    session_id: str
    viewers: list[Viewer] = field(default_factory=list)
    newest_ts: dict[int, float] = field(default_factory=dict)  # viewer index -> last_ts
    restarts: dict[int, list[float]] = field(default_factory=dict)  # -> arrivals of restarts


def _ray_workers(title: str) -> list[psutil.Process]:
    """Our Ray workers whose process title starts with `ray::<title>`."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if (proc.cmdline() or [""])[0].startswith(f"ray::{title}"):
                found.append(proc)
        except psutil.Error:
            continue
    return found


async def _kill_actor(handle: Any, pid: int | None, how: str) -> None:
    import ray

    if how == "SIGKILL" and pid is not None:
        os.kill(pid, signal.SIGKILL)
    else:
        ray.kill(handle, no_restart=False)


class Chaos:
    def __init__(self, running: RunningStack, client: Client, rng: random.Random,
                 sessions: list[Watched]) -> None:
        self._running = running
        self._client = client
        self._rng = rng
        self._sessions = sessions
        self._namespace = running.settings.namespace

    async def inject(self, kind: str) -> Fault:
        import ray

        how = self._rng.choice(["SIGKILL", "ray.kill"])
        at_ms = time.time() * 1000
        node = (await self._client.session(self._sessions[0].session_id))["node_id"]
        if kind == "chromium":
            host = ray.get_actor(f"browser:{node}", namespace=self._namespace)
            pid = await host.pid.remote()
            if pid is None:
                return Fault(kind, "SIGKILL", at_ms, "-", error="no Chromium running")
            os.kill(pid, signal.SIGKILL)
            return Fault(kind, "SIGKILL", at_ms, f"chromium {pid}")
        if kind == "renderer":
            host = ray.get_actor(f"browser:{node}", namespace=self._namespace)
            pid = await host.pid.remote()
            renderers = [p for p in _children(pid) if "--type=renderer" in _cmdline(p)]
            if not renderers:
                return Fault(kind, "SIGKILL", at_ms, "-", error="no renderer found")
            victim = self._rng.choice(renderers)
            victim.kill()
            return Fault(kind, "SIGKILL", at_ms, f"renderer {victim.pid}")
        if kind == "streamer":
            streamer = ray.get_actor(f"streamer:{node}", namespace=self._namespace)
            await _kill_actor(streamer, await streamer.worker_pid.remote(), how)
            return Fault(kind, how, at_ms, f"streamer:{node[:8]}",
                         restarted=[s.session_id for s in self._sessions])
        if kind == "session":
            watched = self._rng.choice(self._sessions)
            name = next(n for n in ray.util.list_named_actors()
                        if n.split("#")[0] == f"session:{watched.session_id}")
            actor = ray.get_actor(name, namespace=self._namespace)
            await _kill_actor(actor, await actor.worker_pid.remote(), how)
            return Fault(kind, how, at_ms, name, restarted=[watched.session_id])
        if kind == "replica":
            replicas = [n for n in ray.util.list_named_actors(all_namespaces=True)
                        if n["name"].startswith("SERVE_REPLICA::rrstream#Gateway")]
            chosen = self._rng.choice(replicas)
            handle = ray.get_actor(chosen["name"], namespace=chosen["namespace"])
            workers = _ray_workers("ServeReplica:rrstream:Gateway")
            pid = self._rng.choice(workers).pid if workers and how == "SIGKILL" else None
            await _kill_actor(handle, pid, how if pid is not None else "ray.kill")
            return Fault(kind, how if pid is not None else "ray.kill", at_ms, chosen["name"])
        registry = self._running.registry
        workers = _ray_workers("RegistryActor")
        await _kill_actor(registry, workers[0].pid if workers else None, how)
        return Fault(kind, how if workers else "ray.kill", at_ms, "registry")

    async def recovered(self, fault: Fault) -> None:
        """Waits until the viewers are back (see the module docstring)."""
        deadline = time.monotonic() + _RECOVERY_LIMIT_S
        restarted = [s for s in self._sessions if s.session_id in fault.restarted]
        while time.monotonic() < deadline:
            firsts = [next((t for t in s.restarts.get(i, []) if t >= fault.at_ms), None)
                      for s in restarted for i in range(len(s.viewers))]
            behind = [ts for s in self._sessions for ts in s.newest_ts.values()
                      if ts <= fault.at_ms]
            flowing = not behind and all(len(s.newest_ts) == len(s.viewers)
                                         for s in self._sessions)
            if restarted and None not in firsts:
                fault.recovery_s = round((max(t for t in firsts if t) - fault.at_ms) / 1000, 2)
                return
            if not restarted and flowing:
                fault.recovery_s = round(time.time() - fault.at_ms / 1000, 2)
                return
            await asyncio.sleep(0.02)
        fault.error = f"not every viewer back within {_RECOVERY_LIMIT_S:g} s"

    async def listed_again(self, fault: Fault) -> None:
        ids = {s.session_id for s in self._sessions}
        deadline = time.monotonic() + _RECOVERY_LIMIT_S
        while time.monotonic() < deadline:
            try:
                if ids <= {s["id"] for s in await self._client.sessions()}:
                    fault.listed_s = round(time.time() - fault.at_ms / 1000, 2)
                    return
            except Exception:
                pass  # 503 while the registry is away
            await asyncio.sleep(0.1)


def _children(pid: int | None) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True) if pid else []
    except psutil.Error:
        return []


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _summary(faults: list[Fault]) -> dict[str, dict[str, Any]]:
    out = {}
    for kind in KINDS:
        mine = [f for f in faults if f.kind == kind]
        times = [f.recovery_s for f in mine if f.recovery_s is not None]
        listed = [f.listed_s for f in mine if f.listed_s is not None]
        out[kind] = {
            "injected": len(mine), "recovered": len(times),
            "recovery_median_s": round(statistics.median(times), 2) if times else None,
            "recovery_max_s": max(times) if times else None,
            "listed_again_max_s": max(listed) if listed else None,
            "errors": [f.error for f in mine if f.error],
        }
    return out


async def _run(running: RunningStack, args: argparse.Namespace, rng: random.Random,
               ours: _Ours) -> dict[str, Any]:
    import ray

    base = running.stack.base_url
    page = f"{running.site.url}/busy.html?hz=20"
    async with Client(base, timeout=60) as client:
        await until_routed_to_us(client, running.registry, f"{running.site.url}/simple.html")
        sessions = []
        for _ in range(args.sessions):
            info = await client.create_session(page, name="chaos", idle_timeout_s=0)
            sessions.append(Watched(info["id"]))
        for watched in sessions:
            await client.wait_for_state(watched.session_id, {"running", "idle"}, 120)
            for index in range(args.viewers):
                def seen(frame: Frame, watched: Watched = watched, index: int = index) -> None:
                    watched.newest_ts[index] = frame.header.last_ts
                    if frame.header.reset and frame.reset_reason == "restart":
                        watched.restarts.setdefault(index, []).append(frame.arrival_ms or 0.0)

                viewer = client.viewer(watched.session_id, reconnect=True, decode=False,
                                       keep_frames=False, on_frame=seen)
                viewer.start()
                watched.viewers.append(viewer)
        chaos = Chaos(running, client, rng, sessions)
        await chaos.recovered(Fault("start", "-", time.time() * 1000 - 1, "-"))

        faults: list[Fault] = []
        ends = time.monotonic() + args.minutes * 60
        kinds: list[str] = []
        while time.monotonic() + args.interval < ends:
            await asyncio.sleep(args.interval * rng.uniform(0.6, 1.0))
            ours.scan()
            if not kinds:
                kinds = rng.sample(KINDS, len(KINDS))
            fault = await chaos.inject(kinds.pop())
            checks = [chaos.recovered(fault)]
            if fault.kind == "registry":
                checks.append(chaos.listed_again(fault))
            await asyncio.gather(*checks)
            faults.append(fault)
            print(f"[chaos] {fault.kind:<9} {fault.how:<8} {fault.target:<40} "
                  f"recovered in {fault.recovery_s} s"
                  f"{'' if fault.listed_s is None else f', listed in {fault.listed_s} s'}"
                  f"{'' if not fault.error else ' — ' + fault.error}", flush=True)

        ours.scan()
        gaps = sum(len(v.gaps) for s in sessions for v in s.viewers)
        bad = sum(v.stats.bad_frames for s in sessions for v in s.viewers)
        resets = {}
        for s in sessions:
            for v in s.viewers:
                for reset in v.resets:
                    resets[reset.reason] = resets.get(reset.reason, 0) + 1
        for s in sessions:
            for v in s.viewers:
                await v.stop()
        final = [await client.session(s.session_id) for s in sessions]
        failed = [i for i in final if i["state"] == "failed"]
        by_budget = [i for i in failed if "crashed" in (i["error"] or "")]
        for s in sessions:
            await client.stop_session(s.session_id)
        await asyncio.sleep(1)
        actors_left = [n for n in ray.util.list_named_actors() if n.startswith("session:")]
    return {"faults": faults, "gaps": gaps, "bad_frames": bad, "resets": resets,
            "sessions": final, "failed": len(failed), "failed_by_crash_budget": len(by_budget),
            "session_actors_left": actors_left}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--interval", type=float, default=12.0,
                        help="seconds between faults (each waits 60-100%% of it)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "chaos.json")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"[chaos] seed {seed}: {args.minutes:g} min, {args.sessions} sessions x "
          f"{args.viewers} viewers, a fault every ~{args.interval:g} s", flush=True)
    ours = _Ours()
    with bench_lock("bench.chaos"):
        settings = bench_settings(browser_slots=args.sessions + 1, warm_browsers=0,
                                  gateway_replicas=args.replicas)
        info = machine_info()
        with bench_stack(settings) as running:
            result = asyncio.run(_run(running, args, rng, ours))
            chromium_running = [p.pid for p in running.chromium.survivors()]
        leftovers = running.leftovers
    dirs_left = ours.dirs_left()
    faults: list[Fault] = result.pop("faults")
    summary = _summary(faults)
    rows = [[kind, s["injected"], s["recovered"], s["recovery_median_s"], s["recovery_max_s"],
             s["listed_again_max_s"] if kind == "registry" else None]
            for kind, s in summary.items()]
    text = table(["fault", "injected", "recovered", "recovery p50 s", "max s", "listed again s"],
                 rows)
    text += (f"\n\nevents lost outside documented resets: {result['gaps']} gaps, "
             f"{result['bad_frames']} bad frames (must be 0)"
             f"\nresets viewers got: {result['resets']}"
             f"\nsessions failed: {result['failed']} "
             f"({result['failed_by_crash_budget']} by the crash budget)"
             f"\nleft over: {len(result['session_actors_left'])} session actors after stopping "
             f"every session; after shutdown {len(leftovers)} Chromium processes killed by "
             f"the reaper, {len(dirs_left)} browser temp directories")
    publish(text, {
        "benchmark": "chaos", "when": datetime.now(UTC).isoformat(), "seed": seed,
        "args": {k: str(v) for k, v in vars(args).items()}, "machine": info,
        "summary": summary, "faults": [_fault(f) for f in faults],
        **result, "chromium_left_after_shutdown": leftovers,
        "chromium_running_before_shutdown": len(chromium_running),
        "browser_dirs_left": dirs_left,
    }, args.out)
    clean = (result["gaps"] == 0 and result["bad_frames"] == 0
             and result["failed"] == result["failed_by_crash_budget"]
             and not result["session_actors_left"] and not leftovers and not dirs_left)
    return 0 if clean else 1


def _fault(fault: Fault) -> dict[str, Any]:
    return {name: getattr(fault, name) for name in Fault.__slots__}


class _Ours:
    """Which browser temp directories are ours: those whose owner (the pid their name
    starts with) was one of our processes. Other stacks on the machine share the root."""

    def __init__(self) -> None:
        self._pids: set[int] = set()
        self.scan()

    def scan(self) -> None:
        self._pids |= {p.pid for p in psutil.Process().children(recursive=True)}

    def dirs_left(self) -> list[str]:
        try:
            names = [p.name for p in browsers_root().iterdir()]
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.partition("-")[0].isdigit()
                      and int(n.partition("-")[0]) in self._pids)


if __name__ == "__main__":
    sys.exit(main())
