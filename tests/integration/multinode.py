"""A three-node Ray cluster on this machine (ray.cluster_utils.Cluster, loopback): sessions
spread over nodes, one gateway streams them all, and losing a node restarts exactly its
sessions. Runs in its own process (`python -m tests.integration.multinode OUT.json`)
because one process can hold only one Ray."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import ray
from ray.cluster_utils import Cluster

from pipeline.config import Settings
from serve.app import deploy_gateway, ray_environment, shutdown
from serve.client import Client, Viewer
from tests.conftest import _serve_site, free_port

NODE_IP = "127.0.0.2"


async def first_snapshot(ws_url: str) -> dict:
    """A viewer that connects (again, by itself, while a lost replica is replaced) and
    returns the first frame that brings a FullSnapshot."""
    async with Viewer(ws_url, reconnect=True, max_retries=40) as viewer:
        frame = await viewer.wait_for(lambda f: f.full_snapshot, 120)
    return {"first_seq": frame.header.first_seq, "reset": frame.header.reset}


def live(info: dict) -> bool:
    return info["state"] in ("running", "idle")


async def scenario(cluster: Cluster, base: str, site_url: str) -> dict:
    async with Client(base, timeout=60) as client:
        ids = [(await client.create_session(f"{site_url}/list.html"))["id"] for _ in range(3)]
        infos = [await client.wait_for_session(sid, live, 90) for sid in ids]
        nodes = {i["id"]: i["node_id"] for i in infos}
        assert len(set(nodes.values())) >= 2, f"sessions did not spread: {nodes}"
        for sid in ids:  # one gateway streams every session, wherever it runs
            await first_snapshot(client.stream_url(sid))
        pool = await client.pool()
        assert pool["slots_total"] == 6 and pool["slots_used"] == 3, pool

        # Remove a worker node that holds a session: exactly its sessions restart.
        victim_node = next(n for n in cluster.worker_nodes
                           if n.node_id in nodes.values())
        lost = {sid for sid, node in nodes.items() if node == victim_node.node_id}
        events_before = {i["id"]: i["events"] for i in infos}
        cluster.remove_node(victim_node, allow_graceful=False)  # the node crashes

        for sid in lost:
            # A restart may first land on the dying node before Ray has marked it dead.
            info = await client.wait_for_session(sid, lambda i: i["restarts"] >= 1 and live(i),
                                                 90)
            assert info["node_id"] != victim_node.node_id
            snapshot = await first_snapshot(client.stream_url(sid))
            assert snapshot["first_seq"] > 2**40, snapshot  # numbered in the new epoch
        for sid in set(ids) - lost:
            info = await client.wait_for_session(
                sid, lambda i: i["events"] > events_before[i["id"]], 90)
            assert info["restarts"] == 0 and info["node_id"] == nodes[sid]
        async with asyncio.timeout(60):  # until every view of the cluster has caught up
            while True:
                pool = await client.pool()
                alive = {n["node_id"] for n in pool["nodes"] if n["alive"]}
                if victim_node.node_id not in alive:
                    break
                await asyncio.sleep(1)
        assert pool["slots_total"] == 4, pool
        for sid in ids:
            await client.stop_session(sid)
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
