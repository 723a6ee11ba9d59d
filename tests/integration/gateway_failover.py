"""Two gateway replicas behind Serve's HAProxy ingress, and a busy session with viewers (the
project's client, `reconnect=True`) spread over both. One replica is killed at a time, by a
SIGKILL of its worker process and by `ray.kill`; then the deployment is rolled (a new
release: Serve replaces both replicas, each closing its viewers with 1012). Runs in its
own process (`python -m tests.integration.gateway_failover OUT.json`): one process holds
one Ray, and this one runs two replicas where the shared test stack runs one.

It records, per fault, which viewers lost their connection, how long each took to be
streaming again and how it resumed; tests/integration/test_gateway_failover.py judges.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import ray

from pipeline.config import Settings
from serve.app import deploy_gateway, shutdown, start_ray
from serve.client import Client, Viewer
from serve.client.connection import now_ms
from tests.conftest import _serve_site, free_port
from tests.integration.replicas import kill_replica, replica_health, replica_names

BUSY_SITE = Path(__file__).resolve().parents[1] / "fixtures" / "busy_site"
REPLICAS = 2
VIEWERS = 6


def live(info: dict[str, Any]) -> bool:
    return info["state"] in ("running", "idle")


async def viewers_by_replica(expected: int, timeout_s: float = 90.0) -> dict[str, int]:
    """Replica id -> its viewers, once `expected` replicas answer (a replaced one is up)."""
    async with asyncio.timeout(timeout_s):
        while True:
            counts = {}
            for replica in await asyncio.to_thread(replica_names):
                try:
                    health = await asyncio.to_thread(replica_health, replica)
                except Exception:  # still starting, or on its way out
                    continue
                counts[replica] = health["viewers"]
            if len(counts) == expected:
                return counts
            await asyncio.sleep(0.5)


async def watch(client: Client, session_id: str) -> Viewer:
    viewer = client.viewer(session_id, reconnect=True)
    viewer.start()
    await viewer.wait_for(lambda f: f.full_snapshot, 60)
    return viewer


def mark(viewers: list[Viewer]) -> list[tuple[int, int, int]]:
    return [(len(v.reconnects), len(v.resets), len(v.gaps)) for v in viewers]


async def fault_outcome(viewers: list[Viewer], marks: list[tuple[int, int, int]],
                        since_ms: float, lost: int | None, timeout_s: float = 30.0
                        ) -> list[dict[str, Any]]:
    """Waits until `lost` viewers (every viewer, when None) reconnected since the marks and
    streamed again; then, for each viewer that reconnected: how long it took from
    `since_ms` and from losing its connection, how it resumed, what else happened."""
    def moved() -> list[int]:
        return [i for i, v in enumerate(viewers) if len(v.reconnects) > marks[i][0]]

    want = len(viewers) if lost is None else lost
    waits = [asyncio.ensure_future(v.wait_until(
        lambda v=v, n=marks[i][0]: len(v.reconnects) > n, timeout_s))
        for i, v in enumerate(viewers)]
    try:
        async with asyncio.timeout(timeout_s):
            for back in asyncio.as_completed(waits):
                await back
                if len(moved()) >= want:
                    break
    except TimeoutError:
        pass  # the outcome says who did not come back
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    await asyncio.sleep(1.0)  # anyone else who lost a connection has done so by now
    outcome = []
    for i in moved():
        viewer = viewers[i]
        await viewer.wait_for(lambda f, v=viewer: f.connection == v.connections, 15)
        reconnects, resets, gaps = marks[i]
        first = viewer.reconnects[reconnects]
        outcome.append({
            "viewer": i,
            "back_after_s": round((first.connected_at_ms - since_ms) / 1000, 2),
            "reconnects": [{"why": r.why, "resume": r.resume, "attempts": r.attempts,
                            "took_s": round((r.connected_at_ms - r.lost_at_ms) / 1000, 2)}
                           for r in viewer.reconnects[reconnects:]],
            "new_resets": [r.reason for r in viewer.resets[resets:]],
            "new_gaps": len(viewer.gaps) - gaps,
        })
    return outcome


async def scenario(settings: Settings, base: str, site_url: str) -> dict[str, Any]:
    result: dict[str, Any] = {"faults": []}
    async with Client(base, timeout=60) as client:
        sid = (await client.create_session(f"{site_url}/index.html?every=20"))["id"]
        await client.wait_for_session(sid, live, 90)
        viewers = [await watch(client, sid) for _ in range(VIEWERS)]
        try:
            for how in ("sigkill", "ray.kill"):
                spread = await viewers_by_replica(REPLICAS)
                while min(spread.values()) == 0:  # after a replacement: the new one is empty
                    viewers.append(await watch(client, sid))  # leastconn sends it there
                    spread = await viewers_by_replica(REPLICAS)
                victim = min(spread, key=lambda r: spread[r])
                marks = mark(viewers)
                killed_at = now_ms()
                pid = await asyncio.to_thread(kill_replica, victim, how)
                outcome = await fault_outcome(viewers, marks, killed_at, spread[victim])
                result["faults"].append({"how": how, "spread": spread, "victim": victim,
                                         "pid": pid, "viewers": len(viewers),
                                         "outcome": outcome})

            # A new release: Serve starts new replicas and stops the old ones gracefully.
            before = set(await viewers_by_replica(REPLICAS))
            marks = mark(viewers)
            rolled_at = now_ms()
            await asyncio.to_thread(deploy_gateway, settings.model_copy(
                update={"hello_timeout_s": settings.hello_timeout_s + 1}))
            after = await viewers_by_replica(REPLICAS)
            outcome = await fault_outcome(viewers, marks, rolled_at, None, timeout_s=90)
            result["faults"].append({"how": "roll", "replicas_before": sorted(before),
                                     "replicas_after": sorted(after),
                                     "viewers": len(viewers), "outcome": outcome})

            await client.stop_session(sid)
            for viewer in viewers:
                await viewer.wait_until(lambda v=viewer: v.end is not None, 30)
            result["ends"] = [v.end.reason if v.end else None for v in viewers]
        finally:
            for viewer in viewers:
                await viewer.stop()
    return result


def main(out_path: str) -> None:
    settings = Settings(port=free_port(), gateway_replicas=REPLICAS, browser_slots=2,
                        warm_browsers=0)
    start_ray(settings, dashboard=False, log_to_driver=False)
    try:
        assert ray.is_initialized()
        deploy_gateway(settings)
        with _serve_site(BUSY_SITE) as site:
            result = asyncio.run(scenario(settings, f"http://127.0.0.1:{settings.port}",
                                          site.url))
        with open(out_path, "w") as out:
            json.dump(result, out, indent=1)
    finally:
        shutdown(settings)


if __name__ == "__main__":
    main(sys.argv[1])
