"""The stats panel's page-to-viewer latency counts only what arrives live: a viewer that
joins an idle page gets its old checkout, whose age is no latency ("–", not thousands of
ms); on a page that changes every second it shows a figure."""

from __future__ import annotations

import asyncio
import re

from playwright.async_api import Page

from tests.e2e.test_viewer import viewer_page, wait_for_replayed

__all__ = ["viewer_page"]  # the fixture, imported for pytest


async def latency(page: Page) -> str:
    return (await page.locator("#stats .stat-latency").inner_text()).strip()


async def test_a_late_joiner_of_an_idle_page_shows_no_latency(api, demo_site,
                                                              viewer_page: Page) -> None:
    info = (await api.post("/sessions", json={"url": f"{demo_site.url}/about.html"})).json()
    try:
        for _ in range(100):
            if (await api.get(f"/sessions/{info['id']}")).json()["events"] > 0:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(3)  # the page's only checkout is seconds old when we join
        await viewer_page.goto(info["viewer_url"])
        await wait_for_replayed(viewer_page, "About Acme Cloud")
        await viewer_page.wait_for_function("window.rrstreamViewer.connection === 'open'")
        await asyncio.sleep(2.5)  # the panel renders every second
        shown = await latency(viewer_page)
        assert shown == "–", f"an idle page's checkout was shown as latency: {shown}"
        await viewer_page.screenshot(path="/tmp/rrstream-e2e-latency-idle.png")
    finally:
        await api.delete(f"/sessions/{info['id']}")


async def test_a_changing_page_shows_its_latency(api, demo_site, viewer_page: Page) -> None:
    info = (await api.post("/sessions", json={"url": f"{demo_site.url}/list.html"})).json()
    try:
        await viewer_page.goto(info["viewer_url"])
        await wait_for_replayed(viewer_page, "Item 2", timeout_s=60)
        shown = ""
        for _ in range(50):
            shown = await latency(viewer_page)
            if shown != "–":
                break
            await asyncio.sleep(0.2)
        match = re.fullmatch(r"([\d,]+) ms", shown)
        assert match, f"no latency shown for a live page: {shown!r}"
        assert int(match[1].replace(",", "")) < 3000, shown
    finally:
        await api.delete(f"/sessions/{info['id']}")
