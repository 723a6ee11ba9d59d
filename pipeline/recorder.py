"""Injects the rrweb recorder into every frame of a browser context and receives its batches.

The page hands over one batch per call through a raw CDP binding
(`Runtime.addBinding`): about 30x cheaper than Playwright's `expose_binding`,
which is what lets one session stream tens of thousands of events per second. A message
over a Mi characters (one huge event: a very large DOM's snapshot) comes in pieces, one
per page task (`~part`, ..., `$last part`): they are joined here before the batch is
read, and other sessions' calls pass between them on the node's shared browser.

The recorder is an init script, so it runs before any page script and whatever the
page's Content-Security-Policy says (Chromium exempts scripts injected over CDP). The
session also drives it (`window.__rrstreamRecorder` in frontend/src/recorder.js): a
checkout on demand, its state, a restart; and, to stop a page whose main thread never
yields, crashes its renderer over the same CDP session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from playwright.async_api import BrowserContext, CDPSession, Page
from playwright.async_api import Error as PlaywrightError

from pipeline.config import Settings
from pipeline.errors import RRStreamError
from pipeline.event_rate import sampling_levels
from pipeline.models import SessionSpec
from pipeline.protocol import PageBatch

BINDING_NAME = "__rrstreamBatch"
# Names the init script in stack traces, which is how the page tells the recorder's own
# failures from the page's.
SCRIPT_NAME = "rrstream-recorder.js"
_log = logging.getLogger(__name__)
# Page.crash takes the renderer down at once and is never answered.
_CRASH_SEND_S = 0.3
# A binding call's most, for messages in pieces: well above a batch (RRSTREAM_MAX_BATCH_CHARS
# and one event), so that only single huge events are paced, and a flood of big ones is
# not held back below the byte budget that stops it (pipeline/event_rate.py).
PIECE_CHARS = 2**20
PIECE_GAP_MS = 10  # between pieces: a 30 MB snapshot in about half a second
# The last stretch of a pause the page records without sending, to tell whether it is
# still over a limit (frontend/src/recorder.js `probe`).
PROBE_MS = 1000
# What a page may send in pieces before they make a batch: a page's own script can call
# the binding too, and pieces that never end must not grow without bound.
_MAX_PIECED_CHARS = 256 * 2**20


def assets_dir(settings: Settings) -> Path:
    """Where the built frontend lives (frontend/dist unless RRSTREAM_ASSETS_DIR says)."""
    if settings.assets_dir:
        return Path(settings.assets_dir)
    return Path(__file__).resolve().parent.parent / "frontend" / "dist"


def record_options(settings: Settings, spec: SessionSpec | None = None) -> dict[str, object]:
    """The recorder's options; `spec` adds a session's privacy options."""
    levels = sampling_levels(settings)
    privacy: dict[str, object] = {}
    if spec is not None:
        privacy = {"maskAllInputs": spec.mask_all_inputs,
                   "maskTextSelector": spec.mask_text_selector,
                   "blockSelector": spec.block_selector}
    return {
        "binding": BINDING_NAME,
        "flushMs": settings.flush_ms,
        "maxBatchChars": settings.max_batch_chars,
        "pieceChars": PIECE_CHARS,
        "pieceGapMs": PIECE_GAP_MS,
        "checkoutEveryMs": settings.checkout_every_ms,
        "sampling": levels[0],
        "samplingLevels": levels,
        **privacy,
        "slimDOMOptions": (
            {"script": True, "comment": True, "headFavicon": True} if settings.slim_dom else {}
        ),
        "maskInputOptions": {"password": settings.mask_passwords},
        "recordCrossOriginIframes": True,
        # The page measures the end of each pause itself (pipeline/event_rate.py).
        "maxEventsPerS": settings.max_events_per_s,
        "maxEventBytesPerS": settings.max_event_bytes_per_s,
        "probeMs": PROBE_MS,
        "canvasFps": settings.canvas_fps,
        "dataURLOptions": {"type": "image/webp", "quality": settings.canvas_quality},
        "scriptName": SCRIPT_NAME,
    }


def init_script(settings: Settings, spec: SessionSpec | None = None) -> str:
    bundle = assets_dir(settings) / "recorder.js"
    try:
        code = bundle.read_text()
    except OSError as exc:
        raise RRStreamError(
            f"recorder bundle missing at {bundle} ({exc.strerror}); run scripts/setup.sh"
        ) from exc
    options = orjson.dumps(record_options(settings, spec)).decode()
    # The bundle may not end with a semicolon; nothing is concatenated after it.
    return f"window.__RRSTREAM_OPTIONS__ = {options};\n{code}\n//# sourceURL={SCRIPT_NAME}\n"


@dataclass(slots=True, frozen=True)
class RecorderState:
    """What the recorder in a page says about itself (frontend/src/recorder.js)."""

    started: bool  # rrweb's record() returned a stop function
    snapshots: int  # FullSnapshots this document took
    failure: str | None  # the last error thrown inside the recorder


@dataclass(slots=True, frozen=True)
class StillOver:
    """The page measured, at a pause's end, that it is still over a limit and stayed
    paused: `!<events/s>|<bytes/s>|<page time, Unix ms>` from frontend/src/recorder.js."""

    per_s: float
    bytes_per_s: float
    page_time: float  # Unix s

    @classmethod
    def parse(cls, message: str) -> StillOver:
        per_s, bytes_per_s, page_ms = message[1:].split("|")
        return cls(float(per_s), float(bytes_per_s), float(page_ms) / 1000.0)


class PageRecorder:
    """Records one page (and its frames) and calls `on_batch` for every batch, in order,
    and `on_still_over` when a paused page measured it is still over a limit.

    `on_batch` may be replaced at any time (the session drops batches while its stream
    is lost, and then waits for a checkout)."""

    def __init__(self, script: str, on_batch: Callable[[PageBatch], None],
                 on_still_over: Callable[[StillOver], None] | None = None) -> None:
        self._script = script
        self.on_batch = on_batch
        self._on_still_over = on_still_over
        self._cdp: CDPSession | None = None
        self._pieces = Pieces()

    async def install(self, context: BrowserContext) -> None:
        """Adds the recorder to every page of `context` from its next navigation on."""
        await context.add_init_script(self._script)

    async def attach(self, context: BrowserContext, page: Page) -> None:
        """Receives `page`'s batches; must run before its first navigation."""
        cdp = await context.new_cdp_session(page)
        cdp.on("Runtime.bindingCalled", self._binding_called)
        await cdp.send("Runtime.enable")
        await cdp.send("Runtime.addBinding", {"name": BINDING_NAME})
        self._cdp = cdp

    async def detach(self) -> None:
        """Stops receiving. Over a live CDP session; the caller bounds it (a page whose main
        thread never yields never answers)."""
        cdp, self._cdp = self._cdp, None
        if cdp is not None:
            await cdp.detach()

    # -- driving the recorder in the page ----------------------------------------------------
    # Each is one Runtime.evaluate in the page's main world over the recorder's own CDP
    # session: unlike Playwright's evaluate it does not wait out a pending navigation. A
    # page busy in a script answers none, so callers bound them.

    async def flush(self) -> None:
        """Hands on what the page's batcher holds (the pagehide flush)."""
        await self._evaluate("dispatchEvent(new Event('pagehide'))")

    async def checkout(self) -> bool:
        """A Meta + FullSnapshot now; False if rrweb is not recording (restart it)."""
        return bool(await self._evaluate(
            "window.__rrstreamRecorder ? window.__rrstreamRecorder.checkout() : false"))

    async def state(self) -> RecorderState | None:
        """None when the recorder is not in the page at all."""
        found = await self._evaluate(
            "window.__rrstreamRecorder ? window.__rrstreamRecorder.state() : null")
        if not isinstance(found, dict):
            return None
        failure = found.get("failure")
        return RecorderState(bool(found.get("started")), int(found.get("snapshots") or 0),
                             str(failure) if failure else None)

    async def restart(self) -> None:
        """Starts rrweb again in the page, which takes a FullSnapshot at once."""
        await self._evaluate("window.__rrstreamRecorder && window.__rrstreamRecorder.restart()")

    async def degrade(self, level: int) -> None:
        """Starts rrweb again with sampling level `level` (pipeline/event_rate.py): a new
        checkout."""
        await self._evaluate(
            f"window.__rrstreamRecorder && window.__rrstreamRecorder.degrade({int(level)})")

    async def pause(self, seconds: float) -> None:
        """Stops rrweb for `seconds`, then starts it again (a new checkout)."""
        await self._evaluate(f"window.__rrstreamRecorder && "
                             f"window.__rrstreamRecorder.pause({int(seconds * 1000)})")

    async def inject(self) -> None:
        """Runs the recorder in the current document (its init script did not run there)."""
        await self._evaluate(self._script)

    async def stop_loading(self) -> None:
        """Cancels a pending navigation (CDP `Page.stopLoading`): the page stays as it is."""
        if self._cdp is not None:
            await self._cdp.send("Page.stopLoading")

    async def crash_renderer(self) -> bool:
        """Crashes the page's renderer (CDP `Page.crash`): this works while its main thread
        spins, when closing it politely does not. False if Chromium refused (it does while
        a navigation is pending: the page then closes normally)."""
        if self._cdp is None:
            return False
        try:
            await asyncio.wait_for(self._cdp.send("Page.crash"), _CRASH_SEND_S)
        except TimeoutError:
            return True  # the expected outcome: the renderer is gone before it could answer
        except PlaywrightError as exc:
            _log.info("the renderer was not crashed: %s", str(exc).splitlines()[0])
            return False
        return True

    async def _evaluate(self, expression: str) -> object:
        if self._cdp is None:
            raise RRStreamError("the recorder is not attached to a page")
        answer = await self._cdp.send("Runtime.evaluate", {"expression": expression,
                                                           "returnByValue": True})
        thrown = answer.get("exceptionDetails")
        if thrown:
            detail = thrown.get("exception", {}).get("description") or thrown.get("text")
            raise RRStreamError(f"the recorder's script failed in the page: {detail}")
        return answer.get("result", {}).get("value")

    def _binding_called(self, params: dict[str, object]) -> None:
        if params.get("name") != BINDING_NAME:
            return
        payload = params.get("payload")
        if not isinstance(payload, str):
            return
        message = self._pieces.add(params.get("executionContextId"), payload)
        if message is None:
            return
        if message.startswith("!"):
            self._still_over(message)
            return
        try:
            batch = PageBatch.parse(message)
        except ValueError:
            _log.warning("malformed batch from the page (%d chars) ignored", len(message))
            return
        self.on_batch(batch)


    def _still_over(self, message: str) -> None:
        try:
            notice = StillOver.parse(message)
        except ValueError:
            _log.warning("malformed notice from the page (%d chars) ignored", len(message))
            return
        if self._on_still_over is not None:
            self._on_still_over(notice)


class Pieces:
    """Joins the messages a page sends in pieces (frontend/src/recorder.js `pieces`),
    per execution context (a document), and passes whole ones through."""

    def __init__(self, limit: int = _MAX_PIECED_CHARS) -> None:
        self._open: dict[object, list[str]] = {}
        self._chars: dict[object, int] = {}
        self._discarding: set[object] = set()  # over the limit: until its last piece
        self._limit = limit

    def add(self, context: object, payload: str) -> str | None:
        """The whole message `payload` completes, or None while pieces are missing."""
        mark = payload[:1]
        if mark not in ("~", "$"):
            if context in self._open or context in self._discarding:
                self._drop(context, "it was never finished")
                self._discarding.discard(context)
            return payload
        if context in self._discarding:
            if mark == "$":
                self._discarding.discard(context)
            return None
        held = self._open.setdefault(context, [])
        held.append(payload[1:])
        chars = self._chars[context] = self._chars.get(context, 0) + len(payload) - 1
        if mark == "$":
            del self._open[context], self._chars[context]
            return "".join(held)
        if chars > self._limit:
            self._drop(context, f"it was over {self._limit // 2**20} Mi characters")
            self._discarding.add(context)
        return None

    def _drop(self, context: object, why: str) -> None:
        held = self._open.pop(context, [])
        self._chars.pop(context, None)
        _log.warning("a batch the page sent in %d pieces was dropped: %s", len(held), why)


__all__ = ["BINDING_NAME", "PIECE_CHARS", "PROBE_MS", "SCRIPT_NAME", "PageRecorder", "Pieces",
           "RecorderState", "StillOver", "assets_dir", "init_script", "record_options"]
