"""The asset cache through the real stack (docs/architecture.md, "Assets"): a page with a
cross-origin stylesheet and web font and an image that needs the page's cookie is
streamed naming `/assets/<sha256>` for each; `GET /assets/<sha256>` answers the bytes the
session's browser loaded; its recording keeps them, and deleting it deletes them."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import pytest

from pipeline.asset_cache import asset_id
from pipeline.recording_store import RecordingStore
from tests.integration.asset_site import CDN_IP, FONT, IMAGE, AssetSite, serve_asset_site
from tests.integration.test_recordings import wait_until_finished

_NAMED = re.compile(rb"/assets/([0-9a-f]{64})")


@pytest.fixture(scope="module")
def asset_site() -> Iterator[AssetSite]:
    with serve_asset_site() as site:
        yield site


def named(text: bytes) -> set[str]:
    return {m.decode() for m in _NAMED.findall(text)}


async def served_sheets(api, shas: set[str]) -> list[str]:
    """The stylesheets among the named assets, as the gateway serves them (each named asset
    must be served)."""
    sheets = []
    for sha in shas:
        answer = await api.get(f"/assets/{sha}")
        assert answer.status_code == 200, answer.text
        if answer.headers["content-type"].startswith("text/css"):
            sheets.append(answer.text)
    return sheets


async def test_a_page_s_styles_font_and_cookie_image_reach_viewers_through_the_gateway(
        api, client, stack, asset_site: AssetSite) -> None:
    image, font = asset_id(IMAGE), asset_id(FONT)
    created = await api.post("/sessions", json={"url": asset_site.page_url, "name": "assets"})
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    async with client.viewer(sid) as viewer:
        # The page's first snapshot comes before its late assets; the checkout they bring
        # names the image and the stylesheet's copy that names the font.
        await viewer.wait_for(lambda f: f.full_snapshot, timeout_s=30)
        deadline = time.monotonic() + 30
        while True:
            checkout = [f for f in viewer.frames if f.full_snapshot][-1].text or b""
            sheets = await served_sheets(api, named(checkout))
            if image in named(checkout) and any(f'url("/assets/{font}")' in s
                                                for s in sheets):
                break
            assert time.monotonic() < deadline, (named(checkout), sheets)
            await asyncio.sleep(0.5)
    assert asset_site.image_url.encode() not in checkout
    assert asset_site.sheet_url.encode() not in checkout
    assert any(".fancy" in s and "rgb(10, 120, 200)" in s for s in sheets)
    served_image = await api.get(f"/assets/{image}")
    assert served_image.content == IMAGE
    assert served_image.headers["content-type"] == "image/png"
    assert served_image.headers["cache-control"] == "public, max-age=31536000, immutable"
    served_font = await api.get(f"/assets/{font}")
    assert served_font.content == FONT and served_font.headers["content-type"] == "font/woff2"
    # The image came with the page's cookie, the stylesheet and font from the other origin.
    assert ("127.0.0.1", "/secret.png", True) in asset_site.hits
    assert {path for address, path, _ in asset_site.hits if address == CDN_IP} == {
        "/css/site.css", "/fonts/test.woff2"}
    unknown = await api.get(f"/assets/{asset_id(b'never loaded')}")
    assert unknown.status_code == 404 and "no asset" in unknown.json()["message"]
    assert (await api.get("/assets/NOT-A-HASH")).status_code == 422

    await api.delete(f"/sessions/{sid}")
    await wait_until_finished(api, sid)
    events = (await api.get(f"/recordings/{sid}/events")).content
    assert image in named(events)
    store = RecordingStore(stack.settings.recordings_url)
    for sha in (image, font):
        kept = store.find_asset(sha)
        assert kept is not None and kept.data == (IMAGE if sha == image else FONT)
    # With the session gone the gateway still serves what its browser loaded, and asks
    # the site for nothing.
    hits = len(asset_site.hits)
    assert (await api.get(f"/assets/{image}")).content == IMAGE
    assert (await api.get(f"/assets/{font}")).content == FONT
    assert len(asset_site.hits) == hits

    deleted = await api.delete(f"/recordings/{sid}")
    assert deleted.status_code == 204, deleted.text
    # Its copies go with it (another recording of the same page, from another test,
    # may keep the same bytes: the store as a whole may still have them).
    assert not store.keeps_asset(image, sid) and not store.keeps_asset(font, sid)
    assert not store.fs.exists(store.path(sid, "assets", image))
