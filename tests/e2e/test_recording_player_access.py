"""The recording player on a gateway that requires auth: a recording's viewer link plays
it with no API key (its token fetches `/recordings/{id}/events`), a live session opened
by its view link is rewound with that link's token, and without either the player says
in words that it may not play, and asks for a key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from playwright.async_api import Page

from serve.client import Client
from tests.e2e.test_viewer import viewer_page, wait_for_replayed
from tests.integration.secure_stack import KEY, SecureStack, secure_stack

__all__ = ["viewer_page"]  # a fixture this module uses


@pytest.fixture(scope="module")
def stack_with_auth() -> Iterator[SecureStack]:
    with secure_stack() as stack:
        yield stack


async def _ready(page: Page) -> dict:
    await page.wait_for_function(
        "(() => { const p = window.rrstreamViewer.playback; "
        "return p && p.phase !== 'loading'; })()",
        timeout=60_000)
    return await page.evaluate("window.rrstreamViewer.playback")


async def test_links_play_and_rewind_without_a_key(stack_with_auth: SecureStack,
                                                  viewer_page: Page) -> None:
    async with Client(stack_with_auth.base_url, api_key=KEY) as client:
        # The demo: its own site is the one a gateway that blocks private networks admits.
        session = await client.start_demo(idle_timeout_s=0)
        try:
            # A live session, opened by the view link its start answered with.
            await viewer_page.goto(session["view_link"]["url"])
            await wait_for_replayed(viewer_page, "Acme Cloud", timeout_s=60)
            await client.wait_for_session(session["id"], lambda s: s["events"] > 0, 60)
            await asyncio.sleep(6)  # a checkout or two are stored
            await viewer_page.locator("#rewind").click()
            rewound = await _ready(viewer_page)
            assert rewound["phase"] == "ready", rewound
            assert await viewer_page.evaluate("window.rrstreamViewer.mode") == "rewound"
            await wait_for_replayed(viewer_page, "Acme Cloud")
        finally:
            await client.stop_session(session["id"])
        for _ in range(120):
            if (await client.recording(session["id"])).get("ended_at"):
                break
            await asyncio.sleep(0.5)
        link = await client.recording_link(session["id"])

    # A stored recording, opened by its viewer link in a fresh page: no key anywhere.
    page = await viewer_page.context.browser.new_page()  # a context of its own: nothing shared
    try:
        await page.goto(link["url"])
        played = await _ready(page)
        assert played["phase"] == "ready", played
        assert await page.evaluate("window.rrstreamViewer.mode") == "recording"
        await wait_for_replayed(page, "Acme Cloud")
        await page.screenshot(path="/tmp/rrstream-e2e-player-link.png")
    finally:
        await page.close()


async def test_without_a_token_the_player_says_it_may_not(stack_with_auth: SecureStack,
                                                          viewer_page: Page) -> None:
    await viewer_page.goto(f"{stack_with_auth.base_url}/?recording=some-recording")
    played = await _ready(viewer_page)
    assert played["phase"] == "error"
    message = await viewer_page.locator("#player-message").inner_text()
    assert "Cannot play this recording" in message and "API key" in message, message
    await viewer_page.locator("#key-panel").wait_for(state="visible", timeout=15_000)
