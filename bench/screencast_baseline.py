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

import argparse
import asyncio
import base64
import contextlib
import struct
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from playwright.async_api import async_playwright

from pipeline.browser import launch_chromium
from pipeline.config import Settings

SCREENCAST = {"format": "jpeg", "quality": 60, "maxWidth": 1280, "everyNthFrame": 1}
_STUB = "window.__rrstreamAddCustomEvent = () => {};"


def build_app(url: str, seconds_max: float) -> tuple[FastAPI, uvicorn.Server]:
    state: dict[str, Any] = {"ready": False, "frames": 0, "sent": 0}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    viewers: set[WebSocket] = set()
    acks: set[asyncio.Task[Any]] = set()

    async def broadcast() -> None:
        while True:
            message = await queue.get()
            for ws in list(viewers):
                try:
                    await ws.send_bytes(message)
                    state["sent"] += 1
                except Exception:
                    viewers.discard(ws)

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
                    state["frames"] += 1
                    stamp = float(params.get("metadata", {}).get("timestamp") or 0.0)
                    queue.put_nowait(struct.pack(">d", stamp) + base64.b64decode(params["data"]))

                cdp.on("Page.screencastFrame", on_frame)
                broadcaster = asyncio.create_task(broadcast())
                await page.goto(url, wait_until="load")
                await cdp.send("Page.startScreencast", SCREENCAST)
                state["ready"] = True
                stop = asyncio.get_running_loop().call_later(
                    seconds_max, lambda: setattr(server, "should_exit", True))
                try:
                    yield
                finally:
                    stop.cancel()
                    broadcaster.cancel()
                    with contextlib.suppress(Exception):
                        await cdp.send("Page.stopScreencast")
            finally:
                await browser.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {**state, "viewers": len(viewers), "queued": queue.qsize()}

    @app.websocket("/ws")
    async def ws_endpoint(ws: WebSocket) -> None:
        await ws.accept()
        viewers.add(ws)
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            viewers.discard(ws)

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    return app, server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.screencast_baseline")
    parser.add_argument("--url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds-max", type=float, default=300.0)
    args = parser.parse_args(argv)
    _, server = build_app(args.url, args.seconds_max)
    server.config.port = args.port
    server.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
