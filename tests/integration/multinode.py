"""A three-node Ray cluster on this machine (ray.cluster_utils.Cluster, loopback): sessions
spread over nodes, one gateway streams them all, and losing a node restarts exactly its
sessions. Runs in its own process (`python -m tests.integration.multinode OUT.json`)
because one process can hold only one Ray."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import httpx
import ray
import websockets
from ray.cluster_utils import Cluster

from pipeline.codec import make_decoder
from pipeline.config import Settings
from pipeline.protocol import decode_frame
from serve.app import deploy_gateway, ray_environment, shutdown
from tests.conftest import _serve_site, free_port

NODE_IP = "127.0.0.2"


async def first_snapshot(ws_url: str) -> dict:
    """Connects (again, as a viewer does, while a lost replica is replaced) and returns the
    first frame that brings a FullSnapshot."""
    for _ in range(30):
        try:
            return await _first_snapshot(ws_url)
        except (OSError, websockets.ConnectionClosedError, websockets.InvalidStatus):
            await asyncio.sleep(1)
    return await _first_snapshot(ws_url)


async def _first_snapshot(ws_url: str, after: int | None = None) -> dict:
    async with websockets.connect(ws_url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "protocol": 1, "resume_after": after}))
        while (welcome := json.loads(await ws.recv()))["type"] == "status":
            pass
        decoder = make_decoder(welcome["codec"])
        async with asyncio.timeout(60):
            while True:
                message = await ws.recv()
                if isinstance(message, str):
                    continue
                header, payload = decode_frame(message)
                text = decoder.decode(payload, segment_start=header.segment_start)
                if b'"type":2' in text:
                    return {"first_seq": header.first_seq, "reset": header.reset}


async def wait_for(api: httpx.AsyncClient, sid: str, ok, timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    info: dict = {}
    while True:
        try:  # a gateway replica on the lost node is being replaced meanwhile
            info = (await api.get(f"/sessions/{sid}")).raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            info = {"unreachable": repr(exc)}
        if "unreachable" not in info and ok(info):
            return info
        assert time.monotonic() < deadline, f"session {sid} stuck: {info}"
        await asyncio.sleep(0.5)


async def scenario(cluster: Cluster, base: str, site_url: str) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=60) as api:
        ids = [(await api.post("/sessions", json={"url": f"{site_url}/list.html"})).json()["id"]
               for _ in range(3)]
        infos = [await wait_for(api, sid, lambda i: i["state"] in ("running", "idle"))
                 for sid in ids]
        nodes = {i["id"]: i["node_id"] for i in infos}
        assert len(set(nodes.values())) >= 2, f"sessions did not spread: {nodes}"
        ws = base.replace("http", "ws", 1)
        for sid in ids:  # one gateway streams every session, wherever it runs
            await first_snapshot(f"{ws}/sessions/{sid}/stream")
        pool = (await api.get("/pool")).json()
        assert pool["slots_total"] == 6 and pool["slots_used"] == 3, pool

        # Remove a worker node that holds a session: exactly its sessions restart.
        victim_node = next(n for n in cluster.worker_nodes
                           if n.node_id in nodes.values())
        lost = {sid for sid, node in nodes.items() if node == victim_node.node_id}
        events_before = {i["id"]: i["events"] for i in infos}
        cluster.remove_node(victim_node, allow_graceful=False)  # the node crashes

        for sid in lost:
            # A restart may first land on the dying node before Ray has marked it dead.
            info = await wait_for(api, sid, lambda i: i["restarts"] >= 1
                                  and i["state"] in ("running", "idle"))
            assert info["node_id"] != victim_node.node_id
            snapshot = await first_snapshot(f"{ws}/sessions/{sid}/stream")
            assert snapshot["first_seq"] > 2**40, snapshot  # numbered in the new epoch
        for sid in set(ids) - lost:
            info = await wait_for(api, sid, lambda i: i["events"] > events_before[i["id"]])
            assert info["restarts"] == 0 and info["node_id"] == nodes[sid]
        async with asyncio.timeout(60):  # until every view of the cluster has caught up
            while True:
                pool = (await api.get("/pool")).raise_for_status().json()
                alive = {n["node_id"] for n in pool["nodes"] if n["alive"]}
                if victim_node.node_id not in alive:
                    break
                await asyncio.sleep(1)
        assert pool["slots_total"] == 4, pool
        for sid in ids:
            await api.delete(f"/sessions/{sid}")
        return {"nodes": nodes, "lost": sorted(lost), "pool": pool}


def main(out_path: str) -> None:
    settings = Settings(port=free_port(), proxy_location="HeadOnly", browser_slots=2,
                        warm_browsers=0)
    os.environ.update(ray_environment(settings))
    cluster = Cluster(initialize_head=True, head_node_args={
        "node_ip_address": NODE_IP, "resources": {"browser": 2}, "num_cpus": 1,
        "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(node_ip_address=NODE_IP, resources={"browser": 2}, num_cpus=1)
    try:
        ray.init(address=cluster.address, namespace=settings.namespace, log_to_driver=False)
        cluster.wait_for_nodes()
        deploy_gateway(settings)
        with _serve_site() as site:
            result = asyncio.run(scenario(cluster, f"http://127.0.0.1:{settings.port}",
                                          site.url))
        with open(out_path, "w") as out:
            json.dump(result, out)
    finally:
        shutdown(settings)
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
