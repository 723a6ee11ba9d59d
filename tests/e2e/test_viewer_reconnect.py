"""The web viewer while the stack's only gateway replica is replaced: it says
"reconnecting" while the gateway is away, keeps the page it had, and then shows the page
live again, resumed where it stopped (no reset). Screenshots of both moments go to
/tmp/rrstream-e2e-reconnecting-<how>.png and /tmp/rrstream-e2e-reconnected-<how>.png."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from playwright.async_api import Page

from serve.client import Client
from tests.e2e.test_viewer import replayed_text, viewer_page, wait_for_replayed
from tests.integration.replicas import KillHow, kill_replica, serving_replica

__all__ = ["viewer_page"]  # the fixture, imported for pytest

BACK_WITHIN_S = 15.0
_HOOK = """() => ({connection: rrstreamViewer.connection, reconnecting: rrstreamViewer.reconnecting,
                  welcomes: rrstreamViewer.welcomes, resume: rrstreamViewer.resume,
                  resets: rrstreamViewer.resets})"""


async def newest_item(page: Page) -> int:
    return max(map(int, re.findall(r"Item (\d+)", await replayed_text(page))), default=0)


@pytest.mark.parametrize("how", ["sigkill", "ray.kill"])
async def test_the_viewer_says_reconnecting_and_resumes_when_the_gateway_is_replaced(
        client: Client, demo_site, viewer_page: Page, how: KillHow) -> None:
    session = await client.create_session(f"{demo_site.url}/list.html")  # an item a second
    try:
        await viewer_page.goto(session["viewer_url"])
        await wait_for_replayed(viewer_page, "Item 2", timeout_s=60)
        before = await viewer_page.evaluate(_HOOK)
        assert before["connection"] == "open" and before["welcomes"] == 1, before
        replica = await serving_replica(client)

        killed_at = time.monotonic()
        await asyncio.to_thread(kill_replica, replica, how)
        await viewer_page.wait_for_function("rrstreamViewer.reconnecting", timeout=10_000)
        badge = viewer_page.locator("#connection-badge")
        message = viewer_page.locator("#player-message")
        assert await badge.text_content() == "reconnecting"
        assert "Reconnecting" in await message.inner_text()
        shown_before = await newest_item(viewer_page)
        assert shown_before >= 2  # the page it had stays while it is away
        await viewer_page.screenshot(path=f"/tmp/rrstream-e2e-reconnecting-{how}.png")

        await viewer_page.wait_for_function(
            "rrstreamViewer.connection === 'open' && !rrstreamViewer.reconnecting",
            timeout=BACK_WITHIN_S * 1000)
        back_s = round(time.monotonic() - killed_at, 2)
        after = await viewer_page.evaluate(_HOOK)
        what = f"replica {replica} killed by {how}; the viewer was back after {back_s} s: {after}"
        print(what)  # shown with -s, and with a failure
        assert back_s <= BACK_WITHIN_S, what
        # Resumed where it stopped: the stream still had what it missed, so no reset.
        assert after["resume"] == "continue" and after["resets"] == before["resets"], what
        await wait_for_replayed(viewer_page, f"Item {shown_before + 2}", timeout_s=10)
        assert await badge.text_content() == "open", what
        assert await message.is_hidden(), what
        await viewer_page.screenshot(path=f"/tmp/rrstream-e2e-reconnected-{how}.png")
    finally:
        await client.stop_session(session["id"])
