"""The head's GCS killed and started again under running sessions, with GCS fault tolerance
(an external Redis), on a three-node ray.cluster_utils.Cluster on loopback: the head runs
the GCS, the registry and the gateway, two workers run the browsers. Runs in its own
process (`python -m tests.integration.gcs_restart OUT.json`): one process holds one Ray,
and RAY_REDIS_ADDRESS must be set before this one starts.

What it checks, through the API and protocol v1 with viewers attached: the viewers keep
getting frames while the GCS is down and after (no gap, no reset); the API answers 200 or a
JSON 503 with Retry-After meanwhile, never a plain-text 500; afterwards the sessions are
listed as running, a new session starts, and all of them stop.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import ray
from ray.cluster_utils import Cluster

from pipeline.config import Settings
from serve.app import deploy_gateway, ray_environment, shutdown
from serve.client import Client, Viewer
from tests.conftest import _serve_site, free_port
from tests.integration.redis_server import redis_server

NODE_IP = "127.0.0.2"
BUSY_SITE = Path(__file__).resolve().parents[1] / "fixtures" / "busy_site"
OUTAGE_S = 8.0  # how long the GCS stays down
# Raylets and workers wait this long for a GCS that went away before they give up (Ray's
# default is 60 s); the cluster/ configs set it too.
RECONNECT_TIMEOUT_S = 120


def live(info: dict[str, Any]) -> bool:
    return info["state"] in ("running", "idle")


async def probe(http: httpx.AsyncClient, path: str, answers: list[dict[str, Any]],
                method: str = "GET", body: Any = None) -> httpx.Response | None:
    """One request, and what came back: status, whether the body was JSON with a `message`,
    Retry-After. A request the gateway did not answer counts as `no answer`."""
    started = time.monotonic()
    try:
        response = await http.request(method, path, json=body)
    except httpx.HTTPError as exc:
        answers.append({"request": f"{method} {path}", "status": None,
                        "error": type(exc).__name__,
                        "took_s": round(time.monotonic() - started, 2)})
        return None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    answers.append({
        "request": f"{method} {path}", "status": response.status_code,
        "json": answer is not None,
        "message": answer.get("message") if isinstance(answer, dict) else None,
        "retry_after": response.headers.get("retry-after"),
        "took_s": round(time.monotonic() - started, 2),
    })
    return response


async def scenario(cluster: Cluster, base: str, site_url: str) -> dict[str, Any]:
    head = cluster.head_node
    async with Client(base, timeout=60) as client, \
            httpx.AsyncClient(base_url=base, timeout=15) as http:
        ids = [(await client.create_session(f"{site_url}/index.html?every=50"))["id"]
               for _ in range(2)]
        infos = [await client.wait_for_session(sid, live, 120) for sid in ids]
        worker_ids = {n.node_id for n in cluster.worker_nodes}
        assert all(i["node_id"] in worker_ids for i in infos), infos
        viewers = [Viewer(client.stream_url(sid), reconnect=True, keep_frames=False)
                   for sid in ids]
        for viewer in viewers:
            viewer.start()
        try:
            for viewer in viewers:
                await viewer.wait_for(lambda f: f.full_snapshot, 60)
            before = [v.stats.frames for v in viewers]

            killed_at = time.monotonic()
            head.kill_gcs_server()
            kill_took_s = time.monotonic() - killed_at
            during: list[dict[str, Any]] = []
            frames_at_kill = [v.stats.frames for v in viewers]
            # A session asked for while the GCS is down: it starts once the GCS is back.
            created = await probe(http, "/sessions", during, "POST",
                                  {"url": f"{site_url}/index.html"})
            waiting = created.json()["id"] if created and created.status_code == 201 else None
            while time.monotonic() - killed_at < OUTAGE_S:
                await asyncio.gather(probe(http, "/sessions", during),
                                     probe(http, f"/sessions/{ids[0]}", during),
                                     probe(http, "/pool", during),
                                     probe(http, "/readyz", during),
                                     asyncio.sleep(1.0))
            streamed_down = [v.stats.frames - n for v, n in zip(viewers, frames_at_kill,
                                                                 strict=True)]
            head.start_gcs_server()
            restarted_at = time.monotonic()
            down_s = restarted_at - killed_at

            # Listed again, running, on the nodes they were on.
            after: list[dict[str, Any]] = []
            listed_after_s = None
            while listed_after_s is None:
                assert time.monotonic() - restarted_at < 90, after[-5:]
                await probe(http, "/sessions", after)
                if after[-1]["status"] == 200:
                    listed = {s["id"]: s for s in (await http.get("/sessions")).json()}
                    if all(sid in listed and live(listed[sid]) for sid in ids):
                        listed_after_s = time.monotonic() - restarted_at
                        relisted = listed
                        break
                await asyncio.sleep(0.5)
            frames_at_restart = [v.stats.frames for v in viewers]
            await asyncio.sleep(3.0)
            streamed_after = [v.stats.frames - n for v, n in zip(viewers, frames_at_restart,
                                                                  strict=True)]

            # The control plane works again: sessions start and stream, the one asked for
            # during the outage too.
            newcomer = (await client.create_session(f"{site_url}/index.html"))["id"]
            started = [sid for sid in (waiting, newcomer) if sid]
            for sid in started:
                await client.wait_for_session(sid, live, 120)
                async with client.viewer(sid) as late:
                    await late.wait_for(lambda f: f.full_snapshot, 60)

            stopped = {}
            for sid in [*ids, *started]:
                await client.stop_session(sid)
                stopped[sid] = (await client.wait_for_state(sid, {"stopped", "failed"}, 30))
            for viewer in viewers:
                await viewer.wait_until(lambda v=viewer: v.end is not None, 30)
        finally:
            for viewer in viewers:
                await viewer.stop()
        return {
            "frames_before": before,
            "streamed_while_down": streamed_down,
            "streamed_after_restart": streamed_after,
            "answers_while_down": during,
            "answers_after_restart": after,
            "gcs_down_s": round(down_s, 2),
            "gcs_kill_took_s": round(kill_took_s, 2),
            "listed_after_s": round(listed_after_s, 2),
            "created_while_down": waiting,
            "nodes_before": {i["id"]: i["node_id"] for i in infos},
            "nodes_after": {sid: relisted[sid]["node_id"] for sid in ids},
            "restarts_after": {sid: relisted[sid]["restarts"] for sid in ids},
            "stopped": {sid: s["state"] for sid, s in stopped.items()},
            "viewers": [{"gaps": len(v.gaps), "resets": [r.reason for r in v.resets],
                         "reconnects": [(r.why, r.resume) for r in v.reconnects],
                         "end": v.end.reason if v.end else None} for v in viewers],
        }


def main(out_path: str) -> None:
    with redis_server() as redis:
        # Ray reads these when it starts the head's GCS (and again when it restarts it).
        os.environ["RAY_REDIS_ADDRESS"] = redis.address
        os.environ["RAY_external_storage_namespace"] = f"rrstream-test-{uuid.uuid4().hex[:8]}"
        os.environ["RAY_gcs_rpc_server_reconnect_timeout_s"] = str(RECONNECT_TIMEOUT_S)
        settings = Settings(port=free_port(), proxy_location="HeadOnly", warm_browsers=0)
        os.environ.update(ray_environment(settings))
        cluster = Cluster(initialize_head=True, head_node_args={
            "node_ip_address": NODE_IP, "num_cpus": 1, "include_dashboard": False,
            # A restarted GCS must listen where the raylets look for it.
            "gcs_server_port": free_port()})
        try:
            for _ in range(2):
                cluster.add_node(node_ip_address=NODE_IP, resources={"browser": 2}, num_cpus=1)
            ray.init(address=cluster.address, namespace=settings.namespace,
                     log_to_driver=False)
            cluster.wait_for_nodes()
            assert redis.keys() > 0, "the GCS keeps nothing in Redis"
            deploy_gateway(settings)
            with _serve_site(BUSY_SITE) as site:
                result = asyncio.run(scenario(cluster, f"http://127.0.0.1:{settings.port}",
                                              site.url))
            result["redis_keys"] = redis.keys()
            with open(out_path, "w") as out:
                json.dump(result, out, indent=1)
        finally:
            shutdown(settings)
            cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
