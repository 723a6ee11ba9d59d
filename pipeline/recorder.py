"""Injects the rrweb recorder into every frame of a browser context and receives its batches.

The page hands over one batch per call through a raw CDP binding
(`Runtime.addBinding`): about 30x cheaper than Playwright's `expose_binding`,
which is what lets one session stream tens of thousands of events per second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import orjson
from playwright.async_api import BrowserContext, CDPSession, Page

from pipeline.config import Settings
from pipeline.errors import RRStreamError
from pipeline.protocol import PageBatch

BINDING_NAME = "__rrstreamBatch"
_log = logging.getLogger(__name__)


def assets_dir(settings: Settings) -> Path:
    """Where the built frontend lives (frontend/dist unless RRSTREAM_ASSETS_DIR says)."""
    if settings.assets_dir:
        return Path(settings.assets_dir)
    return Path(__file__).resolve().parent.parent / "frontend" / "dist"


def record_options(settings: Settings) -> dict[str, object]:
    return {
        "binding": BINDING_NAME,
        "flushMs": settings.flush_ms,
        "maxBatchChars": settings.max_batch_chars,
        "checkoutEveryNms": settings.checkout_every_ms,
        "sampling": {
            "scroll": settings.sampling_scroll_ms,
            "media": settings.sampling_media_ms,
            "input": settings.sampling_input,
        },
        "slimDOMOptions": (
            {"script": True, "comment": True, "headFavicon": True} if settings.slim_dom else {}
        ),
        "maskInputOptions": {"password": settings.mask_passwords},
        "recordCrossOriginIframes": True,
    }


def init_script(settings: Settings) -> str:
    bundle = assets_dir(settings) / "recorder.js"
    try:
        code = bundle.read_text()
    except OSError as exc:
        raise RRStreamError(
            f"recorder bundle missing at {bundle} ({exc.strerror}); run scripts/setup.sh"
        ) from exc
    options = orjson.dumps(record_options(settings)).decode()
    # The bundle may not end with a semicolon; nothing is concatenated after it.
    return f"window.__RRSTREAM_OPTIONS__ = {options};\n{code}\n"


class PageRecorder:
    """Records one page (and its frames) and calls `on_batch` for every batch, in order."""

    def __init__(self, script: str, on_batch: Callable[[PageBatch], None]) -> None:
        self._script = script
        self._on_batch = on_batch
        self._cdp: CDPSession | None = None

    async def attach(self, context: BrowserContext, page: Page) -> None:
        """Must run before the page's first navigation."""
        await context.add_init_script(self._script)
        cdp = await context.new_cdp_session(page)
        cdp.on("Runtime.bindingCalled", self._binding_called)
        await cdp.send("Runtime.enable")
        await cdp.send("Runtime.addBinding", {"name": BINDING_NAME})
        self._cdp = cdp

    async def detach(self) -> None:
        cdp, self._cdp = self._cdp, None
        if cdp is not None:
            try:
                await cdp.detach()
            except Exception as exc:  # the page may already be gone
                _log.debug("CDP detach failed: %s", exc)

    def _binding_called(self, params: dict[str, object]) -> None:
        if params.get("name") != BINDING_NAME:
            return
        payload = params.get("payload")
        if not isinstance(payload, str):
            return
        try:
            batch = PageBatch.parse(payload)
        except ValueError:
            _log.warning("malformed batch from the page (%d chars) ignored", len(payload))
            return
        self._on_batch(batch)


__all__ = ["BINDING_NAME", "PageRecorder", "assets_dir", "init_script", "record_options"]
