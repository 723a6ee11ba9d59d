"""PageGuard: what a session's page may not do to it: be granted a permission, hold it up
with dialogs, or open windows.

- Permissions: every one Chromium knows is set to `denied` in the session's context
  (CDP `Browser.setPermission`), so `navigator.permissions.query` says `denied` and a
  request never ends `granted`, whatever Playwright's defaults become.
- Dialogs and popups: an init script (frontend/src/guard.js) makes `alert`, `confirm`,
  `prompt`, `print` and `window.open` return at once, and cancels links and forms that
  would open a window. An alert loop or a `window.open` storm then costs a counter
  increment per call in the page, where letting Chromium open each dialog or page costs
  the shared browser, the driver and this process a round trip (measured in
  bench/hostile.py). What gets past it is caught in Playwright: a dialog is dismissed
  (a `beforeunload` one accepted, so the page can be left) and a new page closed.

Both paths report a `Notice` with a count; the session counts them into one warning per
kind (pipeline/warning_log.py), so a storm is bounded in memory as in CPU.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from playwright.async_api import BrowserContext, CDPSession, Dialog, Page
from playwright.async_api import Error as PlaywrightError

from pipeline.config import Settings
from pipeline.errors import RRStreamError, describe_error
from pipeline.recorder import assets_dir

BINDING_NAME = "__rrstreamNotice"
SCRIPT_NAME = "rrstream-guard.js"
_REPORT_MS = 500
_ANSWER_S = 2.0
_CLOSE_S = 0.2
_MAX_TEXT = 300
# The names Chromium's Browser.setPermission accepts (checked against Chromium 14x;
# an unknown one is skipped with a note in the log).
DENIED_PERMISSIONS = (
    "geolocation", "notifications", "push", "midi", "camera", "microphone",
    "background-sync", "ambient-light-sensor", "accelerometer", "gyroscope", "magnetometer",
    "clipboard-read", "clipboard-write", "payment-handler", "idle-detection",
    "persistent-storage", "screen-wake-lock", "display-capture", "window-management",
    "local-fonts", "storage-access", "top-level-storage-access", "nfc", "keyboard-lock",
    "pointer-lock", "speaker-selection", "captured-surface-control", "local-network-access",
    "web-app-installation", "background-fetch", "periodic-background-sync",
    "system-wake-lock",
)
_log = logging.getLogger(__name__)


class Disturbance(enum.StrEnum):
    DIALOG = "dialog"
    POPUP = "popup"


@dataclass(slots=True, frozen=True)
class Notice:
    """`count` dialogs or popups of one page, the last of them described in `what`."""

    kind: Disturbance
    count: int
    what: str
    url: str | None


def guard_script(settings: Settings) -> str:
    bundle = assets_dir(settings) / "guard.js"
    try:
        code = bundle.read_text()
    except OSError as exc:
        raise RRStreamError(
            f"page guard bundle missing at {bundle} ({exc.strerror}); run scripts/setup.sh"
        ) from exc
    options = orjson.dumps({"binding": BINDING_NAME, "reportMs": _REPORT_MS}).decode()
    return f"window.__RRSTREAM_GUARD__ = {options};\n{code}\n//# sourceURL={SCRIPT_NAME}\n"


def parse_notices(payload: str) -> list[Notice]:
    """The guard script's report (`{url, counts: {kind: n}, last: {kind: text}}`); a page
    can call the binding itself, so every field is checked and bounded."""
    try:
        found = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(found, dict):
        return []
    counts, last, url = found.get("counts"), found.get("last"), found.get("url")
    if not isinstance(counts, dict) or not isinstance(last, dict):
        return []
    url = url[:_MAX_TEXT] if isinstance(url, str) else None
    notices = []
    for kind in Disturbance:
        count = counts.get(kind.value)
        if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
            continue
        what = last.get(kind.value)
        notices.append(Notice(kind, min(count, 1_000_000_000),
                              what[:_MAX_TEXT] if isinstance(what, str) else kind.value, url))
    return notices


class PageGuard:
    """Guards one context and its session's page. `on_notice` is called for every report,
    from Playwright's callbacks (the session's loop)."""

    def __init__(self, script: str, on_notice: Callable[[Notice], None]) -> None:
        self._script = script
        self._on_notice = on_notice
        self._cdp: CDPSession | None = None
        self._expecting = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def install(self, context: BrowserContext) -> None:
        """Guards every page of `context` from its next navigation on."""
        await context.clear_permissions()
        await context.add_init_script(self._script)
        context.on("page", self._on_new_page)

    def expect_page(self) -> None:
        """The next page the context opens is the session's own, not a popup."""
        self._expecting = True

    async def attach(self, context: BrowserContext, page: Page) -> None:
        """Receives `page`'s reports and denies its context every permission; must run
        before its first navigation."""
        page.on("dialog", self._on_dialog)
        cdp = await context.new_cdp_session(page)
        cdp.on("Runtime.bindingCalled", self._binding_called)
        await cdp.send("Runtime.enable")  # bindingCalled reaches only a session that enabled it
        await cdp.send("Runtime.addBinding", {"name": BINDING_NAME})
        self._cdp = cdp
        await self._deny_permissions(cdp)

    async def close(self) -> None:
        """Stops what it was doing (closing popups, dismissing dialogs) and detaches. A page
        whose main thread never yields answers nothing: closing its context ends it all."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=_CLOSE_S)
        cdp, self._cdp = self._cdp, None
        if cdp is not None:
            try:
                await asyncio.wait_for(cdp.detach(), _CLOSE_S)
            except (TimeoutError, PlaywrightError) as exc:
                _log.info("the page guard's CDP session did not detach: %s",
                          describe_error(exc))

    async def _deny_permissions(self, cdp: CDPSession) -> None:
        info = await cdp.send("Target.getTargetInfo")
        context_id = info.get("targetInfo", {}).get("browserContextId")

        async def deny(name: str) -> None:
            descriptor: dict[str, object] = {"name": name}
            if name == "push":
                descriptor["userVisibleOnly"] = True
            params: dict[str, object] = {"permission": descriptor, "setting": "denied"}
            if context_id:
                params["browserContextId"] = context_id
            try:
                await cdp.send("Browser.setPermission", params)
            except PlaywrightError as exc:
                _log.info("permission %s could not be denied explicitly: %s", name,
                          describe_error(exc))

        await asyncio.gather(*(deny(name) for name in DENIED_PERMISSIONS))

    def _binding_called(self, params: dict[str, object]) -> None:
        payload = params.get("payload")
        if params.get("name") != BINDING_NAME or not isinstance(payload, str):
            return
        for notice in parse_notices(payload[:4_096]):
            self._on_notice(notice)

    def _on_dialog(self, dialog: Dialog) -> None:
        what = f"{dialog.type}({orjson.dumps(dialog.message[:120]).decode()})"
        page = dialog.page
        self._on_notice(Notice(Disturbance.DIALOG, 1, what, page.url if page else None))
        # Accepting a beforeunload lets the page go (a workflow's goto, a stop).
        answer = dialog.accept() if dialog.type == "beforeunload" else dialog.dismiss()
        self._spawn(answer, f"dismissing {what}")

    def _on_new_page(self, page: Page) -> None:
        if self._expecting:
            self._expecting = False
            return
        self._on_notice(Notice(Disturbance.POPUP, 1, f"a new window at {page.url}",
                               page.url))
        self._spawn(page.close(run_before_unload=False), "closing a popup")

    def _spawn(self, coro: Any, what: str) -> None:
        async def bounded() -> None:
            try:
                await asyncio.wait_for(coro, _ANSWER_S)
            except (TimeoutError, PlaywrightError) as exc:
                _log.info("%s failed: %s", what, describe_error(exc))

        task = asyncio.get_running_loop().create_task(bounded(), name=what[:60])
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


__all__ = ["BINDING_NAME", "DENIED_PERMISSIONS", "Disturbance", "Notice", "PageGuard",
           "guard_script", "parse_notices"]
