"""The stack's only gateway replica dies under a busy session with viewers attached: Serve
replaces it, and each viewer (the project's client, `reconnect=True`) comes back by itself
within 15 s and resumes where it was, without a gap or a reset (the stream still holds
what it missed). Two gateway replicas: tests/integration/test_gateway_failover.py."""

from __future__ import annotations

import asyncio

import pytest

from serve.client import Client, Viewer
from serve.client.connection import now_ms
from tests.integration.replicas import KillHow, kill_replica, serving_replica

pytestmark = pytest.mark.timeout(300)

BACK_WITHIN_S = 15.0
VIEWERS = 3


@pytest.mark.parametrize("how", ["sigkill", "ray.kill"])
async def test_viewers_come_back_when_the_only_replica_dies(client: Client, busy_site,
                                                             how: KillHow) -> None:
    session = await client.create_session(f"{busy_site.url}/index.html?every=20")
    sid = session["id"]
    viewers = [client.viewer(sid, reconnect=True) for _ in range(VIEWERS)]
    try:
        await client.wait_for_state(sid, {"running", "idle"}, 60)
        for viewer in viewers:
            viewer.start()
        for viewer in viewers:
            await viewer.wait_for(lambda f: f.full_snapshot, 60)
        replica = await serving_replica(client)
        resets = [len(v.resets) for v in viewers]
        assert not any(v.reconnects for v in viewers)

        killed_at = now_ms()
        pid = await asyncio.to_thread(kill_replica, replica, how)
        await asyncio.gather(*(wait_back(v) for v in viewers))

        took = [round((v.reconnects[0].connected_at_ms - killed_at) / 1000, 2)
                for v in viewers]
        what = f"replica {replica} (pid {pid}) killed by {how}; viewers back after {took} s"
        print(what)  # shown with -s, and with a failure
        assert max(took) <= BACK_WITHIN_S, what
        for viewer, before in zip(viewers, resets, strict=True):
            assert [r.resume for r in viewer.reconnects] == ["continue"] * len(
                viewer.reconnects), (what, viewer.reconnects)
            assert not viewer.gaps and len(viewer.resets) == before, (
                what, viewer.gaps, viewer.resets)
        assert await serving_replica(client) != replica, what
    finally:
        for viewer in viewers:
            await viewer.stop()
        await client.stop_session(sid)


async def wait_back(viewer: Viewer) -> None:
    """Until the viewer reconnected and applied a frame on its new connection."""
    await viewer.wait_until(lambda: bool(viewer.reconnects), BACK_WITHIN_S + 15)
    await viewer.wait_for(lambda f: f.connection == viewer.connections, 15)
