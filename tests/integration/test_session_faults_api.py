"""Session faults through the real stack (REST, Ray actors, the node's shared Chromium): a
DELETE that returns in time whatever the page does, a first page that does not open, and
the node's browser host killed under running sessions."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import psutil
import pytest
import ray

from pipeline.browser_dirs import browsers_root
from tests.conftest import free_port, wait_for_state
from tests.integration.browser_procs import chromium_under, cpu_percent, renderers
from tests.integration.fault_site import FaultSite


async def session_status(stack, sid: str):
    session = ray.get_actor(f"session:{sid}", namespace=stack.settings.namespace)
    return await session.status.remote()


def host_actor(stack, node_id: str):
    return ray.get_actor(f"browser:{node_id}", namespace=stack.settings.namespace)


async def test_delete_returns_within_5_s_for_a_page_in_an_endless_script(
        stack, api, fault_site: FaultSite) -> None:
    response = await api.post("/sessions", json={
        "url": fault_site.page("/loop"), "steps": [{"action": "click", "selector": "#go"}]})
    assert response.status_code == 201, response.text
    sid = response.json()["id"]
    info = await wait_for_state(api, sid, {"idle"})
    chromium = await host_actor(stack, info["node_id"]).pid.remote()
    await asyncio.sleep(0.8)  # the loop has begun
    usage = await asyncio.to_thread(cpu_percent, renderers(chromium_under(chromium)), 1.0)
    burning = {pid for pid, cpu in usage.items() if cpu > 15}  # 2 cores, shared
    assert burning, f"the page's renderer should be spinning: {usage}"

    began = time.monotonic()
    stopped = await api.delete(f"/sessions/{sid}")
    took = time.monotonic() - began
    assert stopped.status_code == 200 and stopped.json()["state"] == "stopped", stopped.text
    assert took < 5.0, f"DELETE took {took:.1f} s"
    left = await asyncio.to_thread(cpu_percent, renderers(chromium_under(chromium)), 1.0)
    assert not {pid for pid, cpu in left.items() if pid in burning and cpu > 5}, left


async def test_a_first_page_that_does_not_open_leaves_the_session_running(
        stack, api) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    sid = (await api.post("/sessions", json={"url": url})).json()["id"]
    info = await wait_for_state(api, sid, {"idle", "failed"})
    assert info["state"] == "idle" and info["error"] is None, info
    status = await session_status(stack, sid)
    assert "connection was refused" in status.navigation_error, status
    assert (await api.delete(f"/sessions/{sid}")).json()["state"] == "stopped"


def worker_of(chromium: int) -> psutil.Process:
    """The browser host actor's worker: Chromium's server's parent."""
    return psutil.Process(chromium).parent().parent()


@pytest.mark.parametrize("kill", ["SIGKILL", "ray.kill"])
async def test_sessions_reconnect_when_the_browser_host_actor_is_killed(
        stack, api, fault_site: FaultSite, kill: str) -> None:
    urls = [fault_site.page(f"/plain?name=host-{kill}-{i}&tick=200") for i in range(2)]
    sids = [(await api.post("/sessions", json={"url": u})).json()["id"] for u in urls]
    infos = [await wait_for_state(api, sid, {"idle"}) for sid in sids]
    host = host_actor(stack, infos[0]["node_id"])
    chromium = await host.pid.remote()
    worker = worker_of(chromium)
    old = chromium_under(chromium)
    old_dirs = {p.name for p in browsers_root().iterdir() if p.name.startswith(f"{worker.pid}-")}
    profile = [a for a in psutil.Process(chromium).cmdline() if "user-data-dir" in a]
    assert old_dirs, (f"the host's browser runs in a directory of the root: {worker.pid} "
                      f"{profile} {sorted(p.name for p in browsers_root().iterdir())}")
    before = [(await api.get(f"/sessions/{sid}")).json()["batches"] for sid in sids]

    if kill == "SIGKILL":
        os.kill(worker.pid, signal.SIGKILL)
    else:
        ray.kill(host, no_restart=False)
    # Ray restarts the host; each session retries until it answers, and reopens its page.
    for sid, count in zip(sids, before, strict=True):
        for _ in range(300):
            info = (await api.get(f"/sessions/{sid}")).json()
            if info["batches"] > count + 5:
                break
            await asyncio.sleep(0.1)
        assert info["state"] == "idle" and info["batches"] > count + 5, info
        status = await session_status(stack, sid)
        assert status.browser_crashes == 1 and status.url in urls, status
    assert await host.pid.remote() != chromium
    assert not [p for p in old if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    # The restarted host swept what the killed one left.
    assert not {p.name for p in browsers_root().iterdir()} & old_dirs
    for sid in sids:
        await api.delete(f"/sessions/{sid}")
