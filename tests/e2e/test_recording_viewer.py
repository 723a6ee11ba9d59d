"""The real viewer page replays a stored recording in real time over the WebSocket:
`/?recording=<id>&realtime=1` (without `realtime` it opens the recording player,
tests/e2e/test_recording_player.py)."""

from __future__ import annotations

import asyncio

from tests.e2e.test_viewer import viewer_page, wait_for_replayed
from tests.integration.test_recordings import wait_until_finished

__all__ = ["viewer_page"]  # the fixture, imported for pytest


async def test_viewer_replays_a_recording_and_says_so(api, stack, demo_site, viewer_page) -> None:
    sid = (await api.post("/sessions", json={
        "url": f"{demo_site.url}/list.html", "close_when_done": True,
        "steps": [{"action": "click", "selector": "#add-item"},
                  {"action": "type", "selector": "#new-item", "text": "replayed from disk",
                   "delay_ms": 10},
                  {"action": "press", "selector": "#new-item", "key": "Enter"},
                  {"action": "wait", "ms": 1000}],
    })).json()["id"]
    await wait_until_finished(api, sid)

    await viewer_page.goto(f"{stack.base_url}/?recording={sid}&realtime=1")
    await wait_for_replayed(viewer_page, "replayed from disk", "Item 1")
    header = await viewer_page.locator("#session-label").inner_text()
    assert "recording" in header.lower() and sid in header
    badge = viewer_page.locator("#connection-badge")
    for _ in range(100):
        if await badge.get_attribute("data-state") == "ended":
            break
        await asyncio.sleep(0.2)
    assert await badge.get_attribute("data-state") == "ended"
    assert f"recording={sid}" in viewer_page.url and "session=" not in viewer_page.url
    assert "realtime=1" in viewer_page.url
    assert await viewer_page.evaluate("window.rrstreamViewer.mode") == "realtime"
