"""The viewer's recording player in headless Chromium, on a real recorded workflow: it
plays `/recordings/{id}/events` with rrweb's own Replayer (the npm package the viewer
bundles), pauses, seeks to the markers on its timeline and finds each page's DOM in the
replay's iframe, changes speed, skips inactivity; a live session is rewound into what it
recorded so far and goes back to live; rrweb's own Replayer, loaded straight from npm's
files into a blank page, plays the same events. Screenshots go to
/tmp/rrstream-e2e-player-*.png."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page

from tests.e2e.test_viewer import replayed_text, viewer_page, wait_for_replayed

__all__ = ["viewer_page"]  # the fixture, imported for pytest

RRWEB_UMD = (Path(__file__).resolve().parents[2]
             / "frontend/node_modules/rrweb/dist/rrweb.umd.min.cjs")
IDLE_MS = 16_000  # longer than rrweb's 10 s inactivity threshold: a stretch to skip

# index → form (typed, then idle) → list (an item added by hand) → about.
WORKFLOW = [
    {"action": "click", "selector": "#nav-form"},
    {"action": "type", "selector": "#name", "text": "Ada from the player", "delay_ms": 10},
    {"action": "wait", "ms": IDLE_MS},
    {"action": "click", "selector": "#nav-list"},
    {"action": "click", "selector": "#add-item"},
    {"action": "type", "selector": "#new-item", "text": "played back", "delay_ms": 10},
    {"action": "press", "selector": "#new-item", "key": "Enter"},
    {"action": "wait", "ms": 1500},
    {"action": "click", "selector": "#nav-about"},
    {"action": "wait", "ms": 2500},
]
PAGES = ["index.html", "form.html", "list.html", "about.html"]


@pytest.fixture(scope="module")
async def recorded(stack, demo_site) -> AsyncIterator[str]:
    """The id of a finished recording of WORKFLOW (one per module: it takes ~30 s)."""
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as api:
        response = await api.post("/sessions", json={
            "url": f"{demo_site.url}/index.html", "name": "player e2e",
            "close_when_done": True, "steps": WORKFLOW})
        assert response.status_code == 201, response.text
        sid = response.json()["id"]
        try:
            await wait_until_finished(api, sid)
            yield sid
        finally:
            await api.delete(f"/sessions/{sid}")


async def wait_until_finished(api: httpx.AsyncClient, sid: str, timeout_s: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (await api.get(f"/recordings/{sid}")).json().get("ended_at") is None:
        assert asyncio.get_running_loop().time() < deadline, f"recording {sid} never finished"
        await asyncio.sleep(0.5)


async def playback(page: Page) -> dict:
    return await page.evaluate("window.rrstreamViewer.playback")


async def wait_for_playback(page: Page, condition: str, timeout_s: float = 30) -> dict:
    """Waits until `condition` (JS over `p`, the hook's playback) holds."""
    await page.wait_for_function(
        f"(() => {{ const p = window.rrstreamViewer.playback; return p && ({condition}); }})()",
        timeout=timeout_s * 1000)
    return await playback(page)


async def open_player(page: Page, base_url: str, recording_id: str) -> dict:
    await page.goto(f"{base_url}/?recording={recording_id}")
    info = await wait_for_playback(page, "p.phase === 'ready' || p.phase === 'error'", 60)
    assert info["phase"] == "ready", f"the player did not load: {info.get('error')}"
    return info


async def test_the_player_plays_pauses_seeks_to_markers_and_changes_speed(
        stack, recorded, viewer_page: Page) -> None:
    page = viewer_page
    info = await open_player(page, stack.base_url, recorded)
    assert await page.evaluate("window.rrstreamViewer.mode") == "recording"
    navigations = [m for m in info["markers"] if m["kind"] == "navigation"]
    assert [m["href"].rsplit("/", 1)[-1] for m in navigations] == PAGES, navigations
    clicks = [m for m in info["markers"] if m["kind"] == "click"]
    # The button's click, labelled with its target (the recorder's `rrstream.click`). A
    # click on a link that navigates at once may miss its page's last batch, so not every
    # link's click is in the recording.
    assert "click on #add-item “Add item”" in [m["label"] for m in clicks], clicks
    assert info["totalTime"] >= IDLE_MS, info
    assert await page.locator(".timeline-marker--navigation").count() == len(PAGES)
    assert await page.locator(".timeline-marker--click").count() == len(clicks)
    assert "recording" in (await page.locator("#session-label").inner_text()).lower()

    # It plays on its own; Pause stops the clock, Play goes on from there.
    await wait_for_playback(page, "p.state === 'playing' && p.currentTime > 300")
    play = page.locator(".playback-play")
    await play.click()
    paused = await wait_for_playback(page, "p.state === 'paused'")
    await asyncio.sleep(0.8)
    assert (await playback(page))["currentTime"] == pytest.approx(paused["currentTime"], abs=1)
    assert await play.inner_text() == "Play"
    await play.click()
    later = paused["currentTime"] + 500
    await wait_for_playback(page, f"p.state === 'playing' && p.currentTime > {later}")
    await play.click()
    await wait_for_playback(page, "p.state === 'paused'")

    # The last navigation's marker: the about page, and nothing of the list before it.
    await page.locator(".timeline-marker--navigation").last.click()
    about = await wait_for_replayed(page, "About Acme Cloud")
    assert "played back" not in about
    at = (await playback(page))["currentTime"]
    assert at == pytest.approx(navigations[-1]["at"], abs=50), (at, navigations[-1])
    await page.screenshot(path="/tmp/rrstream-e2e-player-recording.png")

    # The form's marker: its page, the name not typed into yet.
    await page.locator(".timeline-marker--navigation").nth(1).click()
    await wait_for_replayed(page, "Create your account")
    name = "window.rrstreamViewer.iframeDocument()?.querySelector('#name')?.value ?? null"
    assert await page.evaluate(name) == ""
    # The click on "Add item": the list page; played on, the item typed after it appears.
    await page.locator(".timeline-marker--click[aria-label*='add-item']").click()
    shown = await wait_for_replayed(page, "Tasks")
    assert "played back" not in shown
    await play.click()
    await wait_for_replayed(page, "played back", timeout_s=10)
    await play.click()
    await wait_for_playback(page, "p.state !== 'playing'")

    # Speeds: 8x plays eight seconds of the recording in one.
    await page.locator(".playback-speed[data-speed='8']").click()
    await wait_for_playback(page, "p.speed === 8")
    assert await page.locator(".playback-speed.active").inner_text() == "8x"
    await page.locator(".timeline-marker--navigation").nth(1).click()  # the form, then idle
    await play.click()
    await wait_for_playback(page, "p.state === 'playing'")
    start = (await playback(page))["currentTime"]
    await asyncio.sleep(0.5)
    moved = (await playback(page))["currentTime"] - start
    assert moved > 2000, f"8x moved {moved} ms of the recording in 0.5 s"
    await page.locator(".playback-speed[data-speed='1']").click()
    await wait_for_playback(page, "p.speed === 1")
    if (await playback(page))["state"] == "playing":
        await play.click()
    await wait_for_playback(page, "p.state !== 'playing'")

    # The track: a click at its very start shows the first page, not the last one seen.
    box = await page.locator(".timeline-track").bounding_box()
    assert box is not None
    await page.mouse.click(box["x"] + 1, box["y"] + box["height"] / 2)
    await wait_for_replayed(page, "Ship faster with Acme Cloud")
    assert (await playback(page))["currentTime"] < navigations[1]["at"]
    await page.screenshot(path="/tmp/rrstream-e2e-player-start.png")


async def test_skip_inactivity_fast_forwards_the_idle_stretch(stack, recorded,
                                                              viewer_page: Page) -> None:
    page = viewer_page
    info = await open_player(page, stack.base_url, recorded)
    gaps = [g for g in info["inactive"] if g["end"] - g["start"] >= IDLE_MS - 2000]
    assert gaps, f"no idle stretch of ~{IDLE_MS} ms: {info['inactive']}"
    gap = gaps[0]
    assert await page.locator(".timeline-inactive").count() == len(info["inactive"])
    await page.locator(".playback-skip-input").check()
    await wait_for_playback(page, "p.skipInactive === true")
    # From just before the last interaction ahead of the stretch, at 1x: rrweb decides to
    # skip as it plays an event that is followed by a long wait for the next interaction.
    await seek(page, gap["start"] - 1000, grab_at=(gap["start"] + gap["end"]) / 2)
    if (await playback(page))["state"] != "playing":
        await page.locator(".playback-play").click()
    started = asyncio.get_running_loop().time()
    try:
        await wait_for_playback(page, "p.skipping === true", 10)
    except Exception as exc:
        state = await playback(page)
        state.pop("markers")
        raise AssertionError(f"no skip in {gap}: {state}") from exc
    assert await page.locator(".playback-status").inner_text() == "Skipping inactivity…"
    await page.screenshot(path="/tmp/rrstream-e2e-player-skipping.png")
    await wait_for_playback(page, f"p.currentTime >= {gap['end']}", 15)
    took = asyncio.get_running_loop().time() - started
    assert took < (gap["end"] - gap["start"]) / 1000 * 0.75, f"{took:.1f} s to play a {gap} stretch"


async def seek(page: Page, ms: float, grab_at: float) -> None:
    """Seeks by dragging the track's handle from `grab_at` (a time with no marker near, a
    press on a marker seeks to the marker) to where `ms` is."""
    info = await playback(page)
    box = await page.locator(".timeline-track").bounding_box()
    assert box is not None
    def x(at: float) -> float:
        return box["x"] + box["width"] * max(0.0, min(1.0, at / info["totalTime"]))
    y = box["y"] + box["height"] / 2
    await page.mouse.move(x(grab_at), y)
    await page.mouse.down()
    await page.mouse.move(x(ms), y, steps=4)
    await page.mouse.up()


async def test_find_lands_the_player_on_a_typed_text_a_url_and_a_clicked_button(
        stack, recorded, viewer_page: Page) -> None:
    """The recording's search (its index is rec-rest's) from the player's Find and from
    the sidebar's: each hit seeks the player to its moment, with that page on screen."""
    page = viewer_page
    await open_player(page, stack.base_url, recorded)
    await page.locator(".playback-play").click()
    await wait_for_playback(page, "p.state !== 'playing'")

    async def find(kind: str, query: str) -> dict:
        await page.locator(".playback-search-kind").select_option(kind)
        await page.locator(".playback-search-input").fill(query)
        await page.locator(".playback-search button[type=submit]").click()
        hit = page.locator(".playback-hit").first
        await hit.wait_for(timeout=15_000)
        offset = float(await hit.get_attribute("data-offset") or "nan")
        await hit.click()
        # There, or just after: a page's moment (its Meta) shows once its snapshot is in.
        return await wait_for_playback(
            page, f"p.currentTime >= {offset} && p.currentTime < {offset} + 2000")

    await find("url", "about.html")
    await wait_for_replayed(page, "About Acme Cloud")
    await find("click", "add-item")
    shown = await wait_for_replayed(page, "Tasks")
    assert "About Acme Cloud" not in shown
    # Typed text: the item typed into the list. (The name typed into the form is in the
    # recording only once the field loses focus, on the click that leaves the page, and
    # that page's last batch is not always recorded.)
    await find("text", "played back")
    await wait_for_replayed(page, "played back")
    await page.screenshot(path="/tmp/rrstream-e2e-player-find.png")

    # Across recordings: the sidebar's Find opens the recording at the moment, paused.
    await page.goto(f"{stack.base_url}/")
    await page.locator("#find select").select_option("click")
    await page.locator("#find input[type=search]").fill("Add item")
    await page.locator("#find button[type=submit]").click()
    hit = page.locator(f".find-hit[data-recording='{recorded}']").first
    await hit.wait_for(timeout=15_000)
    await hit.click()
    await wait_for_playback(page, "p.phase === 'ready' && p.state === 'paused'", 60)
    shown = await wait_for_replayed(page, "Tasks")
    assert "played back" not in shown  # the moment of the click, before the item was typed
    assert f"recording={recorded}" in page.url


async def test_rrwebs_own_replayer_plays_the_events_to_the_last_page(stack, recorded,
                                                                    viewer_page: Page) -> None:
    """`/recordings/{id}/events` loaded into rrweb's own Replayer (the `rrweb` npm package's
    UMD build, nothing of ours) in a blank page: it finds the workflow's last page. The
    viewer's player, which is that Replayer too, is tested above."""
    page = viewer_page
    await page.goto(f"{stack.base_url}/healthz")  # the gateway's origin, for the fetch
    await page.set_content("<!doctype html><html><body><div id='root'></div></body></html>")
    await page.add_script_tag(content=RRWEB_UMD.read_text() + ";")
    found = await page.evaluate("""async (id) => {
        const response = await fetch(`/recordings/${id}/events`);
        const type = response.headers.get('content-type');
        const events = await response.json();
        const root = document.getElementById('root');
        const replayer = new rrweb.Replayer(events, {root, showWarning: false});
        const {totalTime} = replayer.getMetaData();
        replayer.pause(totalTime + 1);
        const metas = events.filter((e) => e.type === 4);
        const doc = replayer.iframe.contentDocument;
        for (let i = 0; i < 50 && !doc.querySelector('#title'); i++) {
            await new Promise((resolve) => setTimeout(resolve, 100));
        }
        return {status: response.status, type, count: events.length,
                lastHref: metas.at(-1).data.href, text: doc.body.textContent,
                title: doc.querySelector('#title')?.textContent};
    }""", recorded)
    assert found["status"] == 200 and found["type"].startswith("application/json"), found
    assert found["lastHref"].endswith("/about.html")
    assert found["title"] == "About Acme Cloud", found["text"][:300]


async def test_a_live_session_is_rewound_and_goes_back_to_live(api, stack, demo_site,
                                                               viewer_page: Page) -> None:
    page = viewer_page
    info = (await api.post("/sessions", json={"url": f"{demo_site.url}/list.html"})).json()
    try:
        await page.goto(info["viewer_url"])
        await wait_for_replayed(page, "Item 6", timeout_s=60)  # a few seconds are stored
        rewind = page.locator("#rewind")
        await rewind.wait_for(state="visible", timeout=10_000)
        await page.screenshot(path="/tmp/rrstream-e2e-player-live.png")
        await rewind.click()
        rewound = await wait_for_playback(page, "p.phase === 'ready' || p.phase === 'error'", 30)
        assert rewound["phase"] == "ready", rewound
        assert await page.evaluate("window.rrstreamViewer.mode") == "rewound"
        assert "rewound" in (await page.locator("#session-label").inner_text()).lower()
        # Its start (paused there): the list as it began, none of the items it has grown
        # since. Home goes to the first page, a few ms after the first event.
        if (await playback(page))["state"] == "playing":
            await page.locator(".playback-play").click()
        await page.locator(".timeline-track").focus()
        await page.keyboard.press("Home")
        await wait_for_playback(page, "p.state === 'paused' && p.currentTime < 1000")
        await asyncio.sleep(0.3)
        early = await replayed_text(page)
        assert "Item 5" not in early, early[:300]
        await page.screenshot(path="/tmp/rrstream-e2e-player-rewound.png")

        await page.get_by_role("button", name="Back to live").click()
        await page.wait_for_function("window.rrstreamViewer.mode === 'live'", timeout=10_000)
        assert await playback(page) is None
        live = await newest_item(page)
        assert live >= 6
        await wait_for_replayed(page, f"Item {live + 1}", timeout_s=10)
        hook = await page.evaluate("({c: rrstreamViewer.connection, w: rrstreamViewer.welcomes})")
        assert hook == {"c": "open", "w": 1}, hook  # the stream stayed open meanwhile
        assert await page.locator("#replay").is_hidden()
        await page.screenshot(path="/tmp/rrstream-e2e-player-back-to-live.png")
    finally:
        await api.delete(f"/sessions/{info['id']}")


async def newest_item(page: Page) -> int:
    return max(map(int, re.findall(r"Item (\d+)", await replayed_text(page))), default=0)


async def test_an_unknown_recording_is_said_in_words(stack, viewer_page: Page) -> None:
    await viewer_page.goto(f"{stack.base_url}/?recording=no-such-recording")
    info = await wait_for_playback(viewer_page, "p.phase === 'error'")
    message = await viewer_page.locator("#player-message").inner_text()
    assert "Cannot play this recording" in message and info["error"] in message, message
