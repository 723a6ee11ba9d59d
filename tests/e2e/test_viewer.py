"""A real viewer page in headless Chromium, connected through Serve, rebuilds the recorded page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, async_playwright

from pipeline.browser import launch_chromium
from pipeline.config import Settings

# The text a viewer can see in the Replayer's document, its input values, and the
# documents of nested (cross-origin) iframes.
_REPLAYED_TEXT = """() => {
  const doc = window.rrstreamViewer.iframeDocument();
  if (!doc || !doc.body) return "";
  const parts = [doc.body.textContent];
  for (const el of doc.querySelectorAll("input, textarea")) parts.push(el.value);
  for (const frame of doc.querySelectorAll("iframe")) {
    try { parts.push(frame.contentDocument.body.textContent); } catch (e) {}
  }
  return parts.join("\\n");
}"""


@pytest.fixture
async def viewer_page() -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright, Settings())
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        await browser.close()
        assert not errors, f"viewer page threw: {errors}"


async def replayed_text(page: Page) -> str:
    return await page.evaluate(_REPLAYED_TEXT)


async def wait_for_replayed(page: Page, *needles: str, timeout_s: float = 30.0) -> str:
    deadline = asyncio.get_running_loop().time() + timeout_s
    text = ""
    while asyncio.get_running_loop().time() < deadline:
        text = await replayed_text(page)
        if all(n in text for n in needles):
            return text
        await asyncio.sleep(0.2)
    raise AssertionError(f"{needles} not replayed; viewer shows: {text[:500]!r}")


WORKFLOW = [
    {"action": "wait_for", "frame": "#widget", "selector": "#widget-button"},
    {"action": "click", "frame": "#widget", "selector": "#widget-button"},
    {"action": "wait", "ms": 4000},
    {"action": "click", "selector": "#nav-form"},
    {"action": "type", "selector": "#name", "text": "Grace from e2e", "delay_ms": 10},
    {"action": "fill", "selector": "#email", "value": "grace@example.com"},
    {"action": "click", "selector": "#message"},
    {"action": "wait", "ms": 4000},
    {"action": "click", "selector": "#nav-list"},
    {"action": "click", "selector": "#add-item"},
    {"action": "type", "selector": "#new-item", "text": "added by e2e", "delay_ms": 10},
    {"action": "press", "selector": "#new-item", "key": "Enter"},
    {"action": "wait", "ms": 4000},
    {"action": "click", "selector": "#nav-about"},
    {"action": "wait", "ms": 6000},
]


async def test_viewer_rebuilds_text_lists_navigation_and_cross_origin_iframe(
    api, demo_site, viewer_page
) -> None:
    info = (await api.post("/sessions", json={"url": f"{demo_site.url}/index.html",
                                              "steps": WORKFLOW})).json()
    await viewer_page.goto(info["viewer_url"])

    await wait_for_replayed(viewer_page, "Widget clicked 1")  # cross-origin iframe
    await wait_for_replayed(viewer_page, "Grace from e2e", "grace@example.com")  # typed text
    await wait_for_replayed(viewer_page, "added by e2e", "Item 1")  # the list grew
    about = await wait_for_replayed(viewer_page, "About Acme Cloud")  # after a navigation
    assert "added by e2e" not in about

    hook = await viewer_page.evaluate("""() => ({
        connection: window.rrstreamViewer.connection,
        events: window.rrstreamViewer.eventsApplied,
        segments: window.rrstreamViewer.segmentsStarted,
        session: window.rrstreamViewer.sessionId })""")
    assert hook["connection"] == "open" and hook["session"] == info["id"]
    assert hook["events"] > 0 and hook["segments"] >= 4  # one checkout per page at least
    await viewer_page.screenshot(path="/tmp/rrstream-e2e-viewer.png")
    await api.delete(f"/sessions/{info['id']}")
    await viewer_page.wait_for_function("window.rrstreamViewer.connection === 'ended'",
                                        timeout=30_000)


async def test_a_late_viewer_renders_the_current_page(api, demo_site, viewer_page) -> None:
    info = (await api.post("/sessions", json={"url": f"{demo_site.url}/list.html"})).json()
    # Join once the list has auto-grown: the viewer must start from the latest checkout.
    for _ in range(100):
        current = (await api.get(f"/sessions/{info['id']}")).json()
        if current["events"] > 10:
            break
        await asyncio.sleep(0.2)
    await viewer_page.goto(info["viewer_url"])
    await wait_for_replayed(viewer_page, "Item 3", timeout_s=15)
    await api.delete(f"/sessions/{info['id']}")


async def test_a_late_viewer_is_live_at_once_not_replaying_its_segment(
        api, demo_site, viewer_page) -> None:
    """The list adds an item a second; checkouts come every 5 s. A viewer joining ~3 s
    into a segment used to replay those seconds in real time, showing fewer items than
    a viewer that watched from the start until the next checkout."""
    import re

    async def newest_item(page: Page) -> int:
        return max(map(int, re.findall(r"Item (\d+)", await replayed_text(page))), default=0)

    info = (await api.post("/sessions", json={"url": f"{demo_site.url}/list.html"})).json()
    await viewer_page.goto(info["viewer_url"])  # watches from the start: live
    await wait_for_replayed(viewer_page, "Item 1", timeout_s=30)
    await asyncio.sleep(8.5)  # one checkout at ~5 s, the next at ~10 s: join mid-segment
    late = await viewer_page.context.browser.new_page()
    await late.goto(info["viewer_url"])
    await wait_for_replayed(late, "Item 1", timeout_s=10)
    samples = []
    for _ in range(8):
        await asyncio.sleep(0.25)
        samples.append((await newest_item(viewer_page), await newest_item(late)))
    await api.delete(f"/sessions/{info['id']}")
    # An item appears once a second: the two may differ by one for a moment around it (a
    # busy machine delays one page's rendering more than the other's). Replaying the
    # segment would leave the late viewer the ~3 s it joined into behind.
    assert all(live - joined <= 1 for live, joined in samples), samples
    assert any(joined == live for live, joined in samples), samples


@pytest.mark.parametrize("skew_ms", [3_600_000, -3_600_000])
async def test_playback_ignores_the_viewers_clock(api, demo_site, viewer_page, skew_ms) -> None:
    # The viewer's machine is an hour ahead or behind the browser host.
    await viewer_page.add_init_script(f"""(() => {{
        const skew = {skew_ms}, RealDate = Date;
        class SkewedDate extends RealDate {{
            constructor(...args) {{
                if (args.length) super(...args); else super(RealDate.now() + skew);
            }}
            static now() {{ return RealDate.now() + skew; }}
        }}
        globalThis.Date = SkewedDate;
    }})()""")
    info = (await api.post("/sessions", json={"url": f"{demo_site.url}/list.html"})).json()
    await viewer_page.goto(info["viewer_url"])
    await wait_for_replayed(viewer_page, "Item 2", timeout_s=30)
    await api.delete(f"/sessions/{info['id']}")
