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

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket
from playwright.async_api import async_playwright

from bench.relay import Relay
from bench.relay import main as relay_main
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


async def _send_text(ws: WebSocket, text: str) -> None:
    await ws.send_text(text)


def build_server(url: str, seconds_max: float) -> uvicorn.Server:
    relay = Relay(_send_text, encode=json.dumps, events=0)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with async_playwright() as pw:
            browser = await launch_chromium(pw, Settings())
            try:
                page = await browser.new_page()

                def send_event(event: Any) -> None:  # the seed's sendRRWebEvent
                    relay.state["events"] += 1
                    relay.queue.put_nowait(event)

                await page.expose_function("sendRRWebEvent", send_event)
                await page.add_init_script(init_script())
                broadcaster = asyncio.create_task(relay.broadcast())
                await page.goto(url, wait_until="load")
                relay.state["ready"] = True
                stop = relay.stop_after(seconds_max)
                try:
                    yield
                finally:
                    stop.cancel()
                    broadcaster.cancel()
            finally:
                await browser.close()

    return relay.build(lifespan)


if __name__ == "__main__":
    raise SystemExit(relay_main("python -m bench.seed_baseline", build_server))
