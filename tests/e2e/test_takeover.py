"""A person takes control from the real viewer page: their clicks and typing on the scaled
replay reach the real page, a second viewer sees the typing as it happens, and handing
back lets the workflow run its next step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from pipeline.browser import launch_chromium
from pipeline.config import Settings
from tests.conftest import _serve_site, wait_for_state
from tests.e2e.test_viewer import replayed_text, wait_for_replayed

pytestmark = pytest.mark.e2e

SITE = Path(__file__).parent.parent / "fixtures" / "takeover_site"
SCREENSHOT = "/tmp/rrstream-e2e-takeover.png"

# Where an element of the replayed page is on the viewer's screen: its box in the replay
# iframe, through the iframe's on-screen box and scale (what a person clicking on it hits).
_ON_SCREEN = """(selector) => {
  const doc = window.rrstreamViewer.iframeDocument();
  const el = doc && doc.querySelector(selector);
  if (!el) return null;
  const frame = doc.defaultView.frameElement;
  const outer = frame.getBoundingClientRect();
  const scale = outer.width / frame.offsetWidth;
  const box = el.getBoundingClientRect();
  return { x: outer.left + (box.left + box.width / 2) * scale,
           y: outer.top + (box.top + box.height / 2) * scale, scale };
}"""
_FIELD_VALUE = """() => {
  const doc = window.rrstreamViewer.iframeDocument();
  const field = doc && doc.querySelector("#field");
  return field ? field.value : null;
}"""


@pytest.fixture(scope="module")
def takeover_site() -> Iterator[Any]:
    with _serve_site(SITE) as site:
        yield site


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright, Settings())
        yield browser
        await browser.close()


async def _viewer(browser: Browser, url: str, errors: list[str]) -> Page:
    page = await browser.new_page(viewport={"width": 1200, "height": 800})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(url)
    return page


async def _control(page: Page) -> dict[str, Any]:
    return await page.evaluate("window.rrstreamViewer.control")


async def test_a_person_takes_over_clicks_and_types_and_hands_back(
        api: Any, takeover_site: Any, browser: Browser) -> None:
    created = (await api.post("/sessions", json={
        "url": f"{takeover_site.url}/index.html",
        # Long enough for both viewers to open and the take to come during it, on a busy
        # machine too; the workflow then pauses at its end.
        "steps": [{"action": "wait", "ms": 10_000}, {"action": "click", "selector": "#next"}],
    })).json()
    sid = created["id"]
    await wait_for_state(api, sid, {"running"})
    link = (await api.post(f"/sessions/{sid}/viewer-links",
                           json={"role": "control", "label": "Ada"})).json()
    errors: list[str] = []
    controller = await _viewer(browser, link["url"], errors)
    watcher = await _viewer(browser, created["viewer_url"], errors)
    await wait_for_replayed(controller, "Take over here")
    await wait_for_replayed(watcher, "Take over here")
    await controller.wait_for_function("window.rrstreamViewer.control?.canTake === true",
                                       timeout=10_000)
    assert not (await _control(watcher))["canTake"]  # a view link shows no button
    assert await watcher.locator("#take-control").is_hidden()

    await controller.click("#take-control")
    await controller.wait_for_function("window.rrstreamViewer.control?.you === true",
                                       timeout=10_000)
    await watcher.wait_for_function("window.rrstreamViewer.control?.holder === 'Ada'",
                                    timeout=10_000)
    assert "Ada is in control" in await watcher.inner_text("#control-bar")
    info = (await api.get(f"/sessions/{sid}")).json()
    assert (info["state"], info["driven_by"], info["controller"]) == ("paused", "person", "Ada")

    button = await controller.evaluate(_ON_SCREEN, "#button")
    assert button is not None and button["scale"] < 1  # the replay is scaled to fit
    await controller.mouse.click(button["x"], button["y"])
    await wait_for_replayed(watcher, "clicked 1", timeout_s=10)

    field = await controller.evaluate(_ON_SCREEN, "#field")
    await controller.mouse.click(field["x"], field["y"])
    seen: list[str] = []

    async def watch_typing() -> None:
        while not seen or seen[-1] != "typed by a person":
            value = await watcher.evaluate(_FIELD_VALUE)
            if value and (not seen or seen[-1] != value):
                seen.append(value)
            await asyncio.sleep(0.03)

    watching = asyncio.ensure_future(asyncio.wait_for(watch_typing(), 20))
    await controller.keyboard.type("typed by a person", delay=120)
    try:
        await watching
    except TimeoutError:
        raise AssertionError(f"the second viewer saw {seen}; the controller is "
                             f"{await _control(controller)}; the second shows "
                             f"{(await replayed_text(watcher))[:300]!r}") from None
    # The second viewer saw the text grow as it was typed, not only once it was done.
    assert len([v for v in seen if "typed by a person".startswith(v)]) >= 5, seen
    await wait_for_replayed(watcher, "the page has: typed by a person", timeout_s=10)
    await controller.screenshot(path=SCREENSHOT)
    await watcher.screenshot(path=SCREENSHOT.replace(".png", "-watcher.png"))

    info = (await api.get(f"/sessions/{sid}")).json()
    assert info["state"] == "paused" and info["steps"][1]["state"] == "pending"
    await controller.click("#take-control")  # now "Hand back"
    await controller.wait_for_function("window.rrstreamViewer.control?.you === false",
                                       timeout=10_000)
    await wait_for_replayed(watcher, "workflow went on", timeout_s=20)
    info = (await api.get(f"/sessions/{sid}")).json()
    assert info["driven_by"] == "steps" and info["controller"] is None
    assert [c["action"] for c in info["control"]][-3:] == ["take", "hand_back", "resume"]
    assert all(c["by"] == "Ada" for c in info["control"][-3:])
    assert "typed by a person" in await replayed_text(controller)
    await api.delete(f"/sessions/{sid}")
    assert not errors, errors
