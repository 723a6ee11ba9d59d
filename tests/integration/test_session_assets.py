"""A real session (its own Chromium, no Ray) hands what its browser loaded to an asset
cache and names it in its stream (pipeline/asset_capture.py, pipeline/asset_urls.py),
also with the network block on, where every request goes through its egress proxy."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from pipeline.asset_cache import Asset, AssetCache, asset_id
from pipeline.config import Settings
from pipeline.models import SessionSpec, SessionState
from pipeline.session import BrowserSession
from tests.integration.asset_site import FONT, IMAGE, AssetSite, serve_asset_site
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
