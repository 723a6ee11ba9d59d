"""The node's shared Chromium through the real stack: a crash and what follows it."""

from __future__ import annotations

import asyncio
import os
import signal

import ray

from tests.conftest import wait_for_state


async def _status(stack, sid: str):
    session = ray.get_actor(f"session:{sid}", namespace=stack.settings.namespace)
    return await session.status.remote()


async def test_a_shared_browser_crash_is_recovered_by_running_and_warm_sessions(
        stack, api, demo_site) -> None:
    response = await api.post("/sessions", json={"url": f"{demo_site.url}/list.html"})
    sid = response.json()["id"]
    info = await wait_for_state(api, sid, {"idle"})
    host = ray.get_actor(f"browser:{info['node_id']}", namespace=stack.settings.namespace)
    crashed, launches = await host.pid.remote(), await host.launches.remote()
    assert crashed is not None
    os.kill(crashed, signal.SIGKILL)

    for _ in range(300):  # the first session to notice relaunches it
        if await host.pid.remote() not in (None, crashed):
            break
        await asyncio.sleep(0.1)
    assert await host.pid.remote() not in (None, crashed)
    assert await host.launches.remote() == launches + 1
    # Only a reopened page can record: the old one died with its browser.
    batches = (await api.get(f"/sessions/{sid}")).json()["batches"]
    for _ in range(300):
        if (await api.get(f"/sessions/{sid}")).json()["batches"] > batches:
            break
        await asyncio.sleep(0.1)
    info = (await api.get(f"/sessions/{sid}")).json()
    assert info["batches"] > batches and info["state"] == "idle", info
    status = await _status(stack, sid)
    assert status.browser_restarts == 1 and status.url.endswith("/list.html"), status

    # The warm browser was connected to the Chromium that died; it reconnects on start.
    later = (await api.post("/sessions", json={"url": f"{demo_site.url}/index.html"})).json()
    await wait_for_state(api, later["id"], {"running", "idle"})
    assert await host.launches.remote() == launches + 1, "no second relaunch"
    for session_id in (sid, later["id"]):
        await api.delete(f"/sessions/{session_id}")
