"""The viewer on a gateway that requires auth: a viewer link opens the session with no
key; without one the viewer says it is not allowed (no reconnect loop) and asks for an
API key, with which it lists the sessions and watches the one picked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Page

from serve.client import Client
from tests.e2e.test_viewer import viewer_page, wait_for_replayed
from tests.integration.secure_stack import KEY, SecureStack, running_demo, secure_stack

__all__ = ["viewer_page"]  # a fixture this module uses


@pytest.fixture(scope="module")
def stack_with_auth() -> Iterator[SecureStack]:
    with secure_stack() as stack:
        yield stack


@pytest.fixture
async def demo(stack_with_auth: SecureStack) -> AsyncIterator[dict]:
    async with Client(stack_with_auth.base_url, api_key=KEY) as client, \
            running_demo(client) as info:
        yield info


async def _message(page: Page) -> str:
    return await page.locator("#player-message").inner_text()


async def test_a_viewer_link_opens_the_session_without_a_key(demo, viewer_page: Page) -> None:
    await viewer_page.goto(demo["view_link"]["url"])
    await wait_for_replayed(viewer_page, "Acme Cloud")
    await viewer_page.screenshot(path="/tmp/rrstream-e2e-viewer-link.png")
    # The token stays in the fragment: the page's own requests never carried it.
    assert "#token=" in viewer_page.url


async def test_without_a_token_the_viewer_says_so_and_asks_for_a_key(
        stack_with_auth: SecureStack, demo, viewer_page: Page) -> None:
    sockets: list[str] = []
    viewer_page.on("websocket", lambda ws: sockets.append(ws.url))
    await viewer_page.goto(f"{stack_with_auth.base_url}/?session={demo['id']}")
    await viewer_page.locator("#key-panel").wait_for(state="visible", timeout=15_000)
    message = viewer_page.locator("#player-message")
    await message.get_by_text("Not allowed to watch").wait_for(timeout=15_000)
    assert "viewer token is required" in await _message(viewer_page)
    await asyncio.sleep(3)
    assert len(sockets) == 1, f"4401 is final, but the viewer reconnected: {sockets}"
    await viewer_page.screenshot(path="/tmp/rrstream-e2e-key-needed.png")

    await viewer_page.locator("#key-form input[name=api-key]").fill(KEY)
    await viewer_page.locator("#key-form button[type=submit]").click()
    await viewer_page.locator("#key-panel").wait_for(state="hidden", timeout=15_000)
    item = viewer_page.locator(f"li.session[data-id='{demo['id']}'] .session-main")
    await item.wait_for(timeout=15_000)
    await item.click()
    await wait_for_replayed(viewer_page, "Acme Cloud")
    await viewer_page.screenshot(path="/tmp/rrstream-e2e-key-entered.png")
