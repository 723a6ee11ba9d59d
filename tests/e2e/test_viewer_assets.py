"""The real viewer shows a page's cross-origin stylesheet and an image behind the page's
cookie when its own browser may reach nothing but the gateway: live, and replayed from
the recording after the session ended (docs/architecture.md, "Assets")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import BrowserContext, Route, async_playwright

from pipeline.asset_cache import asset_id
from pipeline.browser import launch_chromium
from pipeline.config import Settings
from tests.e2e.test_recording_player import open_player, wait_until_finished
from tests.integration.asset_site import FONT, IMAGE, AssetSite, serve_asset_site

# The page as the viewer rebuilt it: the image decoded at its own size, the paragraph in
# the colour only the cross-origin stylesheet gives it.
_SHOWN = """() => {
  const doc = window.rrstreamViewer && window.rrstreamViewer.iframeDocument();
  if (!doc) return false;
  const image = doc.querySelector("#secret"), text = doc.querySelector("#fancy");
  return Boolean(image && image.complete && image.naturalWidth === 16 && text
    && doc.defaultView.getComputedStyle(text).color === "rgb(10, 120, 200)");
}"""


@pytest.fixture(scope="module")
def asset_site() -> Iterator[AssetSite]:
    with serve_asset_site() as site:
        yield site


class GatewayOnly:
    """A viewer browser's context that may fetch from the gateway and nothing else."""

    def __init__(self, context: BrowserContext, gateway: str) -> None:
        self.context = context
        self.gateway = gateway.rstrip("/") + "/"
        self.fetched: list[str] = []
        self.refused: list[str] = []

    async def until_fetched(self, path: str, timeout_s: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while path not in self.fetched:
            assert asyncio.get_running_loop().time() < deadline, (
                f"{path} was not fetched from the gateway: {self.fetched}")
            await asyncio.sleep(0.1)

    async def install(self) -> None:
        await self.context.route("**/*", self._route)

    async def _route(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(self.gateway):
            self.fetched.append(url[len(self.gateway) - 1:])
            await route.continue_()
        else:
            self.refused.append(url)
            await route.abort("addressunreachable")


@pytest.fixture
async def viewer(stack) -> AsyncIterator[GatewayOnly]:
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright, Settings())
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        only = GatewayOnly(context, stack.base_url)
        await only.install()
        yield only
        await browser.close()


async def test_the_viewer_shows_what_it_could_not_fetch_itself_live_and_replayed(
        api, stack, asset_site: AssetSite, viewer: GatewayOnly) -> None:
    created = await api.post("/sessions", json={"url": asset_site.page_url, "name": "assets"})
    assert created.status_code == 201, created.text
    info = created.json()
    page = await viewer.context.new_page()
    await page.goto(info["viewer_url"])
    await page.wait_for_function(_SHOWN, timeout=30_000)
    assert f"/assets/{asset_id(IMAGE)}" in viewer.fetched
    # Named by the stylesheet's copy; the font is fetched once text in it is laid out.
    await viewer.until_fetched(f"/assets/{asset_id(FONT)}")
    # What it tried elsewhere (the page's first snapshot, taken before its late assets
    # came, still names their URLs) it did not get: what it shows came from the gateway.

    await api.delete(f"/sessions/{info['id']}")
    await wait_until_finished(api, info["id"])
    viewer.fetched.clear()
    player = await viewer.context.new_page()
    await open_player(player, stack.base_url, info["id"])
    await player.wait_for_function(_SHOWN, timeout=30_000)
    assert f"/assets/{asset_id(IMAGE)}" in viewer.fetched
