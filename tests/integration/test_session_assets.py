"""A real session (its own Chromium, no Ray) hands what its browser loaded to an asset
cache and names it in its stream (pipeline/asset_capture.py, pipeline/asset_urls.py),
also with the network block on, where every request goes through its egress proxy; an
export's browser, which reaches nothing, shows those assets from the recording."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator

import orjson
import pytest
from playwright.async_api import Browser

from pipeline.asset_cache import Asset, AssetCache, asset_id
from pipeline.config import Settings
from pipeline.export.browser import ExportBrowser
from pipeline.export.renderer import ReplayRenderer
from pipeline.models import SessionSpec, SessionState
from pipeline.session import BrowserSession
from tests.integration.asset_site import (
    FONT,
    IMAGE,
    IMAGE_RGB,
    AssetSite,
    serve_asset_site,
)
from tests.integration.sinks import ListSink

_NAMED = re.compile(r"/assets/([0-9a-f]{64})")


class CachingSink(ListSink):
    """A stream and its node's asset cache, as the session sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.cache = AssetCache(1 << 24)

    async def put_asset(self, asset: Asset) -> None:
        self.cache.put(asset)


@pytest.fixture(scope="module")
def asset_site() -> Iterator[AssetSite]:
    with serve_asset_site() as site:
        yield site


@pytest.mark.parametrize("blocked", [False, True], ids=["direct", "egress-proxy"])
async def test_the_stream_names_the_assets_the_browser_loaded(asset_site: AssetSite,
                                                              blocked: bool) -> None:
    settings = (Settings(block_private_networks=True, allowed_hosts=["127.0.0.1", "127.0.0.3"])
                if blocked else Settings())
    sink = CachingSink()
    session = BrowserSession("assets", settings, sink)
    status = await session.start(SessionSpec(url=asset_site.page_url))
    assert status.state is SessionState.RUNNING, status.error
    image, font = asset_id(IMAGE), asset_id(FONT)
    try:
        for _ in range(100):  # the late assets' checkout comes 0.5 s after them
            checkouts = [b for b in sink.batches if b.checkout]
            last = checkouts[-1].text if checkouts else ""
            if image in last and asset_site.sheet_url not in last:
                sheet = [sink.cache.get(sha) for sha in _NAMED.findall(last)
                         if sha in sink.cache and sink.cache.get(sha).content_type
                         .startswith("text/css")]
                if sheet and f"/assets/{font}".encode() in sheet[0].data:
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the stream never named every asset: {last[:2000]}")
        # The sheet, its font, the image; a second copy of the sheet if the font came last.
        assert session.status().assets_captured in (3, 4)
    finally:
        await session.stop()
    assert status.blocked_requests == 0
    assert asset_site.image_url not in last
    assert sink.cache.get(image) == Asset(image, "image/png", IMAGE)
    assert sink.cache.get(font) == Asset(font, "font/woff2", FONT)
    assert b"rgb(10, 120, 200)" in sheet[0].data
    # The batch that names the stylesheet lists its font too: a recording keeps both.
    named = next(b for b in sink.batches if b.checkout and b.text == last)
    assert {image, font, sheet[0].id} <= set(named.assets)


# Pixels of a PNG within `tolerance` of a colour, counted by a page of the same browser.
_COUNT = """async ([url, rgb, tolerance]) => {
  const image = new Image();
  image.src = url;
  await image.decode();
  const canvas = new OffscreenCanvas(image.width, image.height);
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, image.width, image.height).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs(data[i] - rgb[0]) <= tolerance && Math.abs(data[i + 1] - rgb[1]) <= tolerance
        && Math.abs(data[i + 2] - rgb[2]) <= tolerance) count += 1;
  }
  return count;
}"""


async def coloured(browser: Browser, png: bytes, rgb: tuple[int, int, int]) -> int:
    page = await browser.new_page()
    try:
        url = "data:image/png;base64," + base64.b64encode(png).decode()
        return int(await page.evaluate(_COUNT, [url, list(rgb), 8]))
    finally:
        await page.close()


async def test_an_export_shows_the_assets_its_recording_keeps(asset_site: AssetSite) -> None:
    """The export's frame holds the image's colour (it answers only with the page's cookie)
    and the text's (only the cross-origin stylesheet gives it), though the export's
    browser reaches nothing but what its renderer answers."""
    sink = CachingSink()
    session = BrowserSession("export-assets", Settings(), sink)
    await session.start(SessionSpec(url=asset_site.page_url))
    image = asset_id(IMAGE)
    for _ in range(300):
        if any(image in b.assets for b in sink.batches if b.checkout):
            break
        await asyncio.sleep(0.1)
    assert any(image in b.assets for b in sink.batches if b.checkout), (
        "no checkout named the cookie-bound image within 30 s",
        [b.assets for b in sink.batches if b.checkout])
    await session.stop()
    events = [event for b in sink.batches for event in json.loads(b.text)]
    asked: list[str] = []

    def kept(wanted: str) -> Asset | None:
        asked.append(wanted)
        return sink.cache.get(wanted)

    settings = Settings(export_nice=0)
    exports = ExportBrowser(settings)
    try:
        browser = await exports.get()
        renderer = ReplayRenderer(browser, settings, orjson.dumps(events), 640, 400, kept)
        try:
            await renderer.start()
            picture = await renderer.frame(renderer.total_ms, "png")
        finally:
            await renderer.close()
        assert image in asked
        # The 16x8 image, scaled into 640x400 with the page: a few dozen pixels.
        assert await coloured(browser, picture, IMAGE_RGB) >= 10
        assert await coloured(browser, picture, (10, 120, 200)) >= 20
    finally:
        await exports.close()
