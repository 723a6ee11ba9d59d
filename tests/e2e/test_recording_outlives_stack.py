"""A recording outlives the whole stack, as a user sees it: a workflow watched live in the
real viewer, the stack stopped and started again (`rrstream up`, each time in a process
of its own), and the recording's player, sought to its end, shows the page the live
viewer showed at the end; with the store in a local directory and in an S3-compatible
server (moto, on loopback)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from serve.client import Client
from tests.conftest import free_port
from tests.e2e.test_recording_player import open_player, wait_for_playback
from tests.e2e.test_viewer import replayed_text, viewer_page, wait_for_replayed
from tests.integration.rrstream_up import rrstream_up
from tests.integration.s3_server import S3Server, s3_server

__all__ = ["viewer_page"]  # the fixture, imported for pytest

# Auto-add off first: the page then changes only when the workflow clicks.
STEPS = [{"action": "click", "selector": "#auto"},
         *[{"action": "click", "selector": "#add-item"}, {"action": "wait", "ms": 400}] * 3]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def up(env: dict[str, str]) -> tuple[Any, str]:
    port = free_port()
    return (rrstream_up("--port", str(port), "--dashboard-port", str(free_port()),
                        "--no-demo", env=env), f"http://127.0.0.1:{port}")


@pytest.mark.parametrize("where", ["local", "s3"])
async def test_the_player_shows_what_the_live_viewer_showed_after_a_restart(
        where: str, tmp_path: Path, demo_site: Any, s3: S3Server, viewer_page: Page) -> None:
    store = (s3.store_env(f"e2e-{os.getpid()}") if where == "s3"
             else {"RRSTREAM_RECORDINGS_URL": str(tmp_path / "recordings")})
    env = {**os.environ, "RRSTREAM_WARM_BROWSERS": "0", "RRSTREAM_BROWSER_SLOTS": "2", **store}
    page = viewer_page

    running, base = up(env)
    with running:
        async with Client(base, timeout=60) as client:
            sid = (await client.create_session(f"{demo_site.url}/list.html", steps=STEPS,
                                               name="seen live"))["id"]
            await page.goto(f"{base}/?session={sid}")
            await client.wait_for_state(sid, {"idle"}, 90)
            live = await wait_for_replayed(page, "Item 3")
            await asyncio.sleep(1.0)  # the last batches reach the viewer
            live = await replayed_text(page)
            await client.stop_session(sid)
            for _ in range(120):
                if (await client.recording(sid))["ended_at"] is not None:
                    break
                await asyncio.sleep(0.25)

    running, base = up(env)
    with running:
        await open_player(page, base, sid)
        await page.locator(".timeline-track").focus()
        await page.keyboard.press("End")
        info = await wait_for_playback(page, "p.currentTime >= p.totalTime - 1")
        replayed = await wait_for_replayed(page, "Item 3")
        await page.screenshot(path=f"/tmp/rrstream-e2e-after-restart-{where}.png")
        assert replayed == live, (info, replayed[:300], live[:300])
