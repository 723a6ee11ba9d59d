"""The seed's original design, single process: a baseline for bench/baselines.py.

    .venv/bin/python -m bench.seed_baseline --url URL --port PORT [--seconds-max 300]

One FastAPI/uvicorn app in one process. On start-up it launches Chromium through
Playwright (pipeline.browser.launch_chromium, the same binary and flags rrstream uses),
exposes `sendRRWebEvent` with `page.expose_function`, injects rrweb 2.2.2
(frontend/node_modules/rrweb/dist/rrweb.umd.cjs) with `page.add_init_script`, and
records with `rrweb.record({emit})`, where `emit` calls `sendRRWebEvent(event)` once
**per event**. Each event goes into an asyncio queue; one task takes it out, turns it
into JSON text and sends it to every connected viewer (`/ws`), one text message per
event. There is no batching, no compression, no sequence numbers and no history: a
viewer sees the events emitted after it connected.

For the stress page it also defines `window.__rrstreamAddCustomEvent(tag, payload)` as
`rrweb.record.addCustomEvent`, the same call rrstream's recorder bundle provides.

`GET /healthz` answers `{"ready": true}` once the page has loaded. The process exits on
SIGTERM (closing Chromium) or after `--seconds-max`, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from playwright.async_api import async_playwright

from pipeline.browser import launch_chromium
from pipeline.config import Settings

RRWEB_UMD = (Path(__file__).resolve().parent.parent / "frontend" / "node_modules" / "rrweb"
             / "dist" / "rrweb.umd.cjs")
# The UMD bundle ends without a semicolon (and with a source-map comment): start on a new
# line with ";".
_RECORD = """
;(() => {
  rrweb.record({ emit(event) { window.sendRRWebEvent(event); } });
  window.__rrstreamAddCustomEvent = (tag, payload) => rrweb.record.addCustomEvent(tag, payload);
})();
"""


def init_script() -> str:
    # Top frame only. Playwright runs init scripts in every frame, including the blank
    # iframe rrweb 2.2.2 creates to read untainted DOM prototypes; with an
    # expose_function binding in place, rrweb's FullSnapshot then recurses until
    # "Maximum call stack size exceeded" and the page never fires "load".
    return "if (window.top === window) {\n" + RRWEB_UMD.read_text() + "\n" + _RECORD + "\n}\n"


def build_app(url: str, seconds_max: float) -> FastAPI:
    state: dict[str, Any] = {"ready": False, "events": 0, "sent": 0}
    queue: asyncio.Queue[Any] = asyncio.Queue()
    viewers: set[WebSocket] = set()

    async def broadcast() -> None:
        while True:
            event = await queue.get()
            text = json.dumps(event)
            for ws in list(viewers):
                try:
                    await ws.send_text(text)
                    state["sent"] += 1
                except Exception:
                    viewers.discard(ws)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with async_playwright() as pw:
            browser = await launch_chromium(pw, Settings())
            try:
                page = await browser.new_page()

                def send_event(event: Any) -> None:  # the seed's sendRRWebEvent
                    state["events"] += 1
                    queue.put_nowait(event)

                await page.expose_function("sendRRWebEvent", send_event)
                await page.add_init_script(init_script())
                broadcaster = asyncio.create_task(broadcast())
                await page.goto(url, wait_until="load")
                state["ready"] = True
                loop = asyncio.get_running_loop()
                stop = loop.call_later(seconds_max, lambda: setattr(server, "should_exit", True))
                try:
                    yield
                finally:
                    stop.cancel()
                    broadcaster.cancel()
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

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    app.state.server = server
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.seed_baseline")
    parser.add_argument("--url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds-max", type=float, default=300.0)
    args = parser.parse_args(argv)
    app = build_app(args.url, args.seconds_max)
    server: uvicorn.Server = app.state.server
    server.config.port = args.port
    server.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
