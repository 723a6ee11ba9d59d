"""A CDP screencast stream: a pixels-not-events baseline for bench/baselines.py.

    .venv/bin/python -m bench.screencast_baseline --url URL --port PORT [--seconds-max 300]

One FastAPI/uvicorn app in one process. On start-up it launches Chromium through
Playwright (pipeline.browser.launch_chromium), opens URL in a 1280x720 page and starts
CDP `Page.startScreencast` (jpeg, quality 60, maxWidth 1280, everyNthFrame 1). Every
`Page.screencastFrame` is acknowledged at once with `Page.screencastFrameAck` and relayed
to every viewer on `/ws` as one binary WebSocket message:

    8 bytes  float64 big-endian: the frame's metadata.timestamp (s since epoch, page side)
    rest     the JPEG bytes (base64-decoded)

No rrweb. For the stress page, `window.__rrstreamAddCustomEvent` is a no-op, so the page
runs its loop and repaints its counter every ~250 ms exactly as it does elsewhere.

`GET /healthz` answers `{"ready": true}` once the page has loaded and the screencast runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import struct
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket
from playwright.async_api import async_playwright

from bench.relay import Relay
from bench.relay import main as relay_main
from pipeline.browser import launch_chromium
from pipeline.config import Settings

SCREENCAST = {"format": "jpeg", "quality": 60, "maxWidth": 1280, "everyNthFrame": 1}
_STUB = "window.__rrstreamAddCustomEvent = () => {};"


async def _send_bytes(ws: WebSocket, message: bytes) -> None:
    await ws.send_bytes(message)


def build_server(url: str, seconds_max: float) -> uvicorn.Server:
    relay = Relay(_send_bytes, frames=0)
    acks: set[asyncio.Task[Any]] = set()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with async_playwright() as pw:
            browser = await launch_chromium(pw, Settings())
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 720})
                await page.add_init_script(_STUB)
                cdp = await page.context.new_cdp_session(page)

                def on_frame(params: dict[str, Any]) -> None:
                    task = asyncio.ensure_future(cdp.send("Page.screencastFrameAck",
                                                          {"sessionId": params["sessionId"]}))
                    acks.add(task)
                    task.add_done_callback(acks.discard)
                    relay.state["frames"] += 1
                    stamp = float(params.get("metadata", {}).get("timestamp") or 0.0)
                    relay.queue.put_nowait(
                        struct.pack(">d", stamp) + base64.b64decode(params["data"]))

                cdp.on("Page.screencastFrame", on_frame)
                broadcaster = asyncio.create_task(relay.broadcast())
                await page.goto(url, wait_until="load")
                await cdp.send("Page.startScreencast", SCREENCAST)
                relay.state["ready"] = True
                stop = relay.stop_after(seconds_max)
                try:
                    yield
                finally:
                    stop.cancel()
                    broadcaster.cancel()
                    with contextlib.suppress(Exception):
                        await cdp.send("Page.stopScreencast")
            finally:
                await browser.close()

    return relay.build(lifespan)


if __name__ == "__main__":
    raise SystemExit(relay_main("python -m bench.screencast_baseline", build_server))
