"""What viewers see is what the page shows, measured in pixels: canvas pages (2D, WebGL,
an animating canvas), a page with a CSS animation frozen for the comparison, and pages
whose picture depends on what a viewer cannot fetch itself (a cross-origin stylesheet, a
cross-origin web font, a cookie-bound image: tests/integration/asset_site.py, watched
from a browser that may reach only the gateway). Each is opened directly and through the
real viewer at the session's viewport and compared picture against picture, then the
same from the recording after the session ended.

The metric: both screenshots are scaled to 128 x 80 (the page's 16:10) in a browser
canvas and compared as the mean absolute difference per colour channel, 0-255. At that
size the viewer's own scaling (the replay is shown at ~0.7x) and the canvas picture's
WebP encoding (quality 0.6) cost a few units; a canvas that is missing leaves white
where the page has large areas of saturated colour, which costs far more (2D: ~100).
THRESHOLD sits between the two: 12, about 5% of the range. Each page's score is
printed (`pytest -s`) and is in every failure message. Two checks keep the test honest:
the direct screenshot must not be blank (a browser that renders nothing cannot pass),
and the viewer's picture with the page's picture (its `#art`) hidden, or the page
opened directly without its asset, must fail the threshold.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright
from playwright.async_api import Error as PlaywrightError

from pipeline.browser import launch_chromium
from pipeline.config import Settings
from tests.e2e.test_recording_player import open_player, wait_until_finished
from tests.e2e.test_viewer import wait_for_replayed
from tests.e2e.test_viewer_assets import GatewayOnly
from tests.integration.asset_site import CDN_IP, PIXEL_PAGES, AssetSite, serve_asset_site

THRESHOLD = 12.0
MIN_SPREAD = 20.0  # luminance standard deviation of a picture that shows something
VIEWPORT = {"width": 1280, "height": 800}  # a session's default viewport
# page, the text the page shows once it holds its final picture, whether it is a canvas
PAGES = [("canvas-2d.html", "drawn", True), ("webgl.html", "drawn", True),
         ("animated-canvas.html", "stopped", True), ("css-animation.html", "drawn", False)]

# Scales two PNGs (data URLs) to 128 x 80 and returns their mean absolute difference per
# channel, and the luminance spread of the first.
_SCORE = """async ([first, second]) => {
  const W = 128, H = 80;
  const pixels = async (url) => {
    const image = new Image();
    await new Promise((done, failed) => {
      image.onload = done; image.onerror = failed; image.src = url;
    });
    const canvas = document.createElement("canvas");
    canvas.width = W; canvas.height = H;
    const context = canvas.getContext("2d");
    context.imageSmoothingQuality = "high";
    context.drawImage(image, 0, 0, W, H);
    return context.getImageData(0, 0, W, H).data;
  };
  const [a, b] = [await pixels(first), await pixels(second)];
  let difference = 0, sum = 0, squares = 0;
  for (let i = 0; i < a.length; i += 4) {
    for (let c = 0; c < 3; c++) difference += Math.abs(a[i + c] - b[i + c]);
    const luminance = 0.2126 * a[i] + 0.7152 * a[i + 1] + 0.0722 * a[i + 2];
    sum += luminance; squares += luminance * luminance;
  }
  const n = a.length / 4;
  return { difference: difference / (n * 3), spread: Math.sqrt(squares / n - (sum / n) ** 2) };
}"""

# The control: the same viewer with each page's picture (its `#art`: the canvas, or the
# CSS-animated panel) hidden. A canvas's picture is its background in the replay
# (frontend/src/viewer/canvas.js), so hiding the element hides it.
_HIDE_ART = """() => {
  const art = window.rrstreamViewer.iframeDocument().getElementById("art");
  if (art) art.style.setProperty("visibility", "hidden", "important");
}"""


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await launch_chromium(playwright, Settings())
        try:
            yield chromium
        finally:
            await chromium.close()


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


async def score(browser: Browser, first: bytes, second: bytes) -> dict[str, float]:
    page = await browser.new_page()
    try:
        return await page.evaluate(_SCORE, [_data_url(first), _data_url(second)])
    finally:
        await page.close()


async def direct_picture(browser: Browser, url: str, ready: str) -> bytes:
    page = await browser.new_page(viewport=VIEWPORT)
    try:
        await page.goto(url)
        await page.wait_for_function(f"document.getElementById('state').textContent === '{ready}'")
        await page.evaluate("document.fonts.ready")
        await asyncio.sleep(0.3)
        return await page.screenshot()
    finally:
        await page.close()


async def viewer_picture(viewer: Page) -> bytes:
    """The replay's picture. A checkout swaps the player's layer (the old one goes once
    the new one is built: frontend/src/viewer/player.js), and the layer being shot may go
    mid-shot; the next one is shot then."""
    layer = viewer.locator(".player-layer:not(.player-layer--pending) iframe")
    for _ in range(4):
        try:
            return await layer.screenshot()
        except PlaywrightError as exc:
            if "not attached" not in str(exc):
                raise
            await asyncio.sleep(0.2)
    return await layer.screenshot()


async def until_alike(browser: Browser, viewer: Page, direct: bytes,
                      timeout_s: float = 15.0) -> dict[str, float]:
    """The viewer's picture's score against `direct` once it is under THRESHOLD, or the
    last score after `timeout_s` (canvas pictures arrive up to 1/fps after the DOM)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await score(browser, direct, await viewer_picture(viewer))
        if asyncio.get_running_loop().time() > deadline:
            return result
        if result["difference"] < THRESHOLD:
            # An animation's picture on the way to its last one may pass already: two
            # pictures' time later the last one is there.
            await asyncio.sleep(1.0)
            return await score(browser, direct, await viewer_picture(viewer))
        await asyncio.sleep(0.5)


async def replay_to_the_end(api: httpx.AsyncClient, viewer: Page, base_url: str,
                            session_id: str, ready: str) -> None:
    """Stops the session, opens its recording in the player and waits for its end."""
    await api.delete(f"/sessions/{session_id}")
    await wait_until_finished(api, session_id)
    await open_player(viewer, base_url, session_id)
    await viewer.wait_for_function(
        "(() => { const p = window.rrstreamViewer.playback;"
        " return p && p.currentTime >= p.totalTime - 50; })()", timeout=60_000)
    await wait_for_replayed(viewer, ready)


async def compare(browser: Browser, viewer: Page, direct: bytes, name: str,
                  where: str) -> None:
    alike = await until_alike(browser, viewer, direct)
    await viewer.screenshot(path=f"/tmp/rrstream-e2e-pixels-{where}-{name}.png")
    assert alike["spread"] > MIN_SPREAD, f"{name}: the page itself shows nothing ({alike})"
    await viewer.evaluate(_HIDE_ART)
    missing = await score(browser, direct, await viewer_picture(viewer))
    print(f"pixels {where} {name}: {alike['difference']:.1f} "
          f"(picture hidden: {missing['difference']:.1f}, threshold {THRESHOLD})")
    assert alike["difference"] < THRESHOLD, (
        f"{name} {where}: the viewer's picture differs by {alike['difference']:.1f} "
        f"(threshold {THRESHOLD}); with its picture hidden {missing['difference']:.1f}")
    assert missing["difference"] > THRESHOLD, (
        f"{name} {where}: with the picture hidden the score is still "
        f"{missing['difference']:.1f}: the metric does not see the canvas")


@pytest.mark.parametrize(("name", "ready", "canvas"), PAGES)
async def test_a_page_looks_the_same_live_and_replayed(
        name: str, ready: str, canvas: bool, stack, pixel_site, browser: Browser) -> None:
    url = f"{pixel_site.url}/{name}"
    direct = await direct_picture(browser, url, ready)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as api:
        response = await api.post("/sessions", json={"url": url, "name": f"pixels {name}"})
        assert response.status_code == 201, response.text
        info = response.json()
        viewer = await browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            await viewer.goto(info["viewer_url"])
            await wait_for_replayed(viewer, ready)
            await compare(browser, viewer, direct, name, "live")
            status = (await api.get(f"/sessions/{info['id']}")).json()
            assert (status["canvas_bytes"] > 1_000) == canvas, status

            await replay_to_the_end(api, viewer, stack.base_url, info["id"], ready)
            await compare(browser, viewer, direct, name, "recorded")
        finally:
            await viewer.close()
            await api.delete(f"/sessions/{info['id']}")


async def test_a_canvas_inside_a_blocked_element_is_not_recorded(
        stack, pixel_site, browser: Browser) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as api:
        response = await api.post("/sessions", json={
            "url": f"{pixel_site.url}/canvas-2d.html", "block_selector": "#art"})
        assert response.status_code == 201, response.text
        info = response.json()
        viewer = await browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            await viewer.goto(info["viewer_url"])
            await wait_for_replayed(viewer, "drawn")
            await asyncio.sleep(2)  # four pictures' time at 2 a second
            status = (await api.get(f"/sessions/{info['id']}")).json()
            assert status["canvas_bytes"] == 0, status
            # rrweb replays a blocked element as an empty one of its size: the canvas is
            # there, without a picture.
            shown = await viewer.evaluate(
                "Array.from(window.rrstreamViewer.iframeDocument().querySelectorAll('canvas'),"
                " (c) => getComputedStyle(c).backgroundImage)")
            assert shown == ["none"], f"a blocked canvas is replayed with a picture: {shown}"
        finally:
            await viewer.close()
            await api.delete(f"/sessions/{info['id']}")


@pytest.fixture(scope="module")
def asset_site() -> Iterator[AssetSite]:
    with serve_asset_site() as site:
        yield site


async def direct_without(browser: Browser, url: str, blocked: list[str]) -> bytes:
    """The page opened directly with the requests for `blocked` URLs refused: what it
    shows without its asset (the control)."""
    context = await browser.new_context(viewport=VIEWPORT)
    try:
        await context.route(lambda u: any(u.startswith(b) for b in blocked),
                            lambda route: route.abort("addressunreachable"))
        page = await context.new_page()
        await page.goto(url)
        await page.evaluate("document.fonts.ready")
        await asyncio.sleep(0.3)
        return await page.screenshot()
    finally:
        await context.close()


@pytest.mark.parametrize("name", sorted(PIXEL_PAGES))
async def test_a_page_looks_the_same_to_a_viewer_that_reaches_only_the_gateway(
        name: str, stack, asset_site: AssetSite, browser: Browser) -> None:
    """A cross-origin stylesheet, a cross-origin web font and a cookie-bound image: the
    viewer's browser refuses every request that is not to the gateway (the pages are on
    loopback addresses, which no host-resolver rule can make unresolvable), so what it
    shows of them came through `/assets/`."""
    url = f"{asset_site.page_url}pixels/{name}"
    direct = await direct_picture(browser, url, "drawn")
    cdn = f"http://{CDN_IP}:{asset_site.cdn_port}/"
    without = await direct_without(browser, url, [cdn, asset_site.image_url])
    control = await score(browser, direct, without)
    print(f"pixels direct {name} without its asset: {control['difference']:.1f}")
    assert control["difference"] > THRESHOLD, (
        f"{name}: without its asset the page scores {control['difference']:.1f}: the metric "
        "does not see the asset")
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    only = GatewayOnly(context, stack.base_url)
    await only.install()
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as api:
        response = await api.post("/sessions", json={"url": url, "name": f"pixels {name}"})
        assert response.status_code == 201, response.text
        info = response.json()
        try:
            viewer = await context.new_page()
            await viewer.goto(info["viewer_url"])
            await wait_for_replayed(viewer, "drawn")
            alike = await until_alike(browser, viewer, direct)
            await viewer.screenshot(path=f"/tmp/rrstream-e2e-pixels-live-{name}.png")
            print(f"pixels live {name} (gateway only): {alike['difference']:.1f}")
            assert alike["difference"] < THRESHOLD, (
                f"{name} live: the viewer's picture differs by {alike['difference']:.1f}; it "
                f"fetched {only.fetched}, was refused {only.refused}")

            await replay_to_the_end(api, viewer, stack.base_url, info["id"], "drawn")
            alike = await until_alike(browser, viewer, direct)
            await viewer.screenshot(path=f"/tmp/rrstream-e2e-pixels-recorded-{name}.png")
            print(f"pixels recorded {name} (gateway only): {alike['difference']:.1f}")
            assert alike["difference"] < THRESHOLD, (
                f"{name} recorded: the viewer's picture differs by {alike['difference']:.1f}")
        finally:
            await context.close()
            await api.delete(f"/sessions/{info['id']}")
