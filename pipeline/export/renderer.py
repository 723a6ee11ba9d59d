"""ReplayRenderer: a recording replayed in headless Chromium, one still at a time.

The export page (frontend/src/export, built into frontend/dist/export) runs rrweb's
Replayer; `frame(offset)` puts the replayer's clock at `offset` (rrweb's `pause`, every
event before it applied at once), waits for the page's images and fonts to settle, and
takes a screenshot through CDP. The browser reaches nothing: every request of its
context is answered from here (the page, its bundle, the events, and the page assets the
recording names, `/assets/<sha256>`, from the recording's copies) or refused, so nothing
leaves the machine; what the recording does not keep (an image it names by its URL) is
not shown.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import mimetypes
from collections.abc import Callable
from typing import Any

from playwright.async_api import Browser, BrowserContext, CDPSession, Page, Route
from playwright.async_api import Error as PlaywrightError

from pipeline.asset_cache import ASSET_PATH, Asset, valid_asset_id
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
                 height: int, assets: Callable[[str], Asset | None] | None = None) -> None:
        """`assets(sha256)`: a page asset the recording keeps, or None (it blocks: it is
        called on a thread)."""
        self._browser = browser
        self._events = events_json
        self._page_assets = assets
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
        if path.startswith(ASSET_PATH):
            await self._answer_asset(route, path[len(ASSET_PATH):])
            return
        file = (self._assets / path.lstrip("/")).resolve()
        if file.parent != self._assets.resolve() or not file.is_file():
            await route.fulfill(status=404, body=b"", content_type="text/plain")
            return
        media = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        await route.fulfill(status=200, body=file.read_bytes(), content_type=media)

    async def _answer_asset(self, route: Route, asset_id: str) -> None:
        found = None
        if self._page_assets is not None and valid_asset_id(asset_id):
            try:
                found = await asyncio.to_thread(self._page_assets, asset_id)
            except Exception as exc:  # the store or the node that has it does not answer
                _log.warning("an export's page asset %s was not read: %s", asset_id,
                             _first_line(exc))
        if found is None:
            await route.fulfill(status=404, body=b"", content_type="text/plain")
            return
        await route.fulfill(status=200, body=found.data, content_type=found.content_type)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no reason given"


__all__ = ["ORIGIN", "ReplayRenderer"]
