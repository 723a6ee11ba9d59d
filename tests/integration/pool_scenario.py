"""A one-slot browser pool (own Ray, so run as `python -m tests.integration.pool_scenario
MODE OUT.json`): queueing with positions, refusal, `rrstream status`, and the Prometheus
metrics."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import time

import httpx
import ray

from pipeline.config import Settings
from serve.app import deploy_gateway, shutdown, start_ray
from serve.cli import main as cli
from tests.conftest import _serve_site, free_port


async def wait_for(api: httpx.AsyncClient, sid: str, states: set[str]) -> dict:
    deadline = time.monotonic() + 90
    while (info := (await api.get(f"/sessions/{sid}")).json())["state"] not in states:
        assert time.monotonic() < deadline, info
        await asyncio.sleep(0.3)
    return info


async def queue(base: str, site: str) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=60) as api:
        first = (await api.post("/sessions", json={"url": f"{site}/list.html"})).json()
        await wait_for(api, first["id"], {"running", "idle"})
        second = (await api.post("/sessions", json={"url": f"{site}/index.html"})).json()
        third = (await api.post("/sessions", json={"url": f"{site}/index.html"})).json()
        assert (second["state"], second["queue_position"]) == ("pending", 1), second
        assert third["queue_position"] == 2, third
        pool = (await api.get("/pool")).json()
        assert pool["queue"] == [second["id"], third["id"]], pool
        assert (pool["slots_total"], pool["slots_used"]) == (1, 1), pool
        out = io.StringIO()
        with contextlib.redirect_stdout(out):  # the command runs its own event loop
            assert await asyncio.to_thread(cli, ["status", "--gateway", base]) == 0
        status_text = out.getvalue()
        assert "1 used of 1 (0 free); queue: 2" in status_text, status_text
        assert first["id"] in status_text and second["id"] in status_text

        await api.delete(f"/sessions/{first['id']}")  # frees the slot: the next in line starts
        await wait_for(api, second["id"], {"running", "idle"})
        assert (await api.get(f"/sessions/{third['id']}")).json()["queue_position"] == 1
        await api.delete(f"/sessions/{third['id']}")  # leaving the queue is fine too
        await api.delete(f"/sessions/{second['id']}")
        metrics = await scrape_metrics({"ray_rrstream_sessions", "ray_rrstream_queue_length",
                                        "ray_rrstream_events_total", "ray_rrstream_bytes_total"})
        return {"status": status_text, "metrics": metrics}


async def scrape_metrics(names: set[str]) -> list[str]:
    node = ray._private.worker.global_worker.node
    url = f"http://{node.node_ip_address}:{node.metrics_export_port}/metrics"
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            text = (await client.get(url)).text
            found = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
                     if line.startswith("ray_rrstream")}
            if names <= found:
                return sorted(found)
            assert time.monotonic() < deadline, f"missing metrics {names - found}"
            await asyncio.sleep(2)


async def refuse(base: str, site: str) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=60) as api:
        first = (await api.post("/sessions", json={"url": f"{site}/index.html"})).json()
        refused = await api.post("/sessions", json={"url": f"{site}/index.html"})
        assert refused.status_code == 503, refused.text
        assert refused.json()["message"] == "no browser slot free (1 of 1 in use); try again later"
        await api.delete(f"/sessions/{first['id']}")
        return {"refused": refused.json()}


def main(mode: str, out_path: str) -> None:
    settings = Settings(port=free_port(), browser_slots=1, warm_browsers=0,
                        when_full="refuse" if mode == "refuse" else "queue")
    start_ray(settings, dashboard=False, log_to_driver=False)
    try:
        deploy_gateway(settings)
        with _serve_site() as site:
            scenario = refuse if mode == "refuse" else queue
            result = asyncio.run(scenario(f"http://127.0.0.1:{settings.port}", site.url))
        with open(out_path, "w") as out:
            json.dump(result, out)
    finally:
        shutdown(settings)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
