"""ReplayRenderer: a recording replayed in headless Chromium, one still at a time.

The export page (frontend/src/export, built into frontend/dist/export) runs rrweb's
Replayer; `frame(offset)` puts the replayer's clock at `offset` (rrweb's `pause`, every
event before it applied at once), waits for the page's images and fonts to settle, and
takes a screenshot through CDP. The browser reaches nothing: every request of its
context is answered from here (the page, its bundle, the events) or refused, so a
replayed page's images and fonts from the web are never fetched (a recording shows what
rrweb inlined), and nothing leaves the machine.
"""

from __future__ import annotations

import base64
import logging
import mimetypes
from typing import Any

from playwright.async_api import Browser, BrowserContext, CDPSession, Page, Route
from playwright.async_api import Error as PlaywrightError

from pipeline.config import Settings
from pipeline.export.errors import ExportFailed
from pipeline.recorder import assets_dir

# A name that never resolves: the page's requests are all answered by the route below.
ORIGIN = "http://rrstream-export.invalid"
_EVENTS = "/events.json"
_LOAD_TIMEOUT_MS = 120_000
_log = logging.getLogger(__name__)
_JPEG_QUALITY = 90


class ReplayRenderer:
    """`await renderer.start()`, then `frame(offset_ms, "jpeg"|"png")` as often as needed,
    then `close()` (in a `finally`). It renders in a browser context of its own in
    `browser` (pipeline/export/browser.py), which it leaves running."""

    def __init__(self, browser: Browser, settings: Settings, events_json: bytes, width: int,
                 height: int) -> None:
        self._browser = browser
        self._events = events_json
        self._width, self._height = width, height
        self._assets = assets_dir(settings) / "export"
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._cdp: CDPSession | None = None
        self.start_time = 0
        self.total_ms = 0

    async def start(self) -> None:
        if not (self._assets / "index.html").exists():
            raise ExportFailed(f"the export page is not built at {self._assets}; run "
                               "scripts/setup.sh")
        self._context = await self._browser.new_context(
            viewport={"width": self._width, "height": self._height}, device_scale_factor=1,
            service_workers="block")
        await self._context.route("**/*", self._answer)
        page = self._page = await self._context.new_page()
        page.set_default_timeout(_LOAD_TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"{ORIGIN}/index.html")
        try:
            clock = await page.evaluate("url => window.rrexport.load(url)", f"{ORIGIN}{_EVENTS}")
        except PlaywrightError as exc:
            raise ExportFailed(f"the recording could not be replayed: {_first_line(exc)}"
                               + (f" ({errors[0]})" if errors else "")) from exc
        self.start_time, self.total_ms = int(clock["startTime"]), int(clock["totalTime"])
        self._cdp = await self._context.new_cdp_session(page)

    async def frame(self, offset_ms: int, kind: str) -> bytes:
        """The page as it was `offset_ms` after the recording's first event: JPEG or PNG."""
        assert self._page is not None and self._cdp is not None, "not started"
        try:
            await self._page.evaluate("offset => window.rrexport.seek(offset)", offset_ms)
            options: dict[str, Any] = {"format": kind, "optimizeForSpeed": True}
            if kind == "jpeg":
                options["quality"] = _JPEG_QUALITY
            shot = await self._cdp.send("Page.captureScreenshot", options)
        except PlaywrightError as exc:
            raise ExportFailed(f"the replay stopped at {offset_ms} ms: "
                               f"{_first_line(exc)}") from exc
        return base64.b64decode(shot["data"])

    async def count(self, selector: str) -> int:
        """How many elements of the replayed page match `selector` now."""
        assert self._page is not None, "not started"
        return int(await self._page.evaluate("s => window.rrexport.count(s)", selector))

    async def close(self) -> None:
        """Closes its browser context (its page with it)."""
        context, self._context, self._page, self._cdp = self._context, None, None, None
        if context is not None:
            try:
                await context.close()
            except PlaywrightError as exc:  # the browser went away: nothing left to close
                _log.warning("an export's browser context did not close: %s",
                             _first_line(exc))

    async def _answer(self, route: Route) -> None:
        url = route.request.url
        if not url.startswith(f"{ORIGIN}/"):
            await route.abort("blockedbyclient")
            return
        path = url[len(ORIGIN):].split("?", 1)[0].split("#", 1)[0]
        if path == _EVENTS:
            await route.fulfill(status=200, body=self._events, content_type="application/json")
            return
        file = (self._assets / path.lstrip("/")).resolve()
        if file.parent != self._assets.resolve() or not file.is_file():
            await route.fulfill(status=404, body=b"", content_type="text/plain")
            return
        media = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        await route.fulfill(status=200, body=file.read_bytes(), content_type=media)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no reason given"


__all__ = ["ORIGIN", "ReplayRenderer"]
