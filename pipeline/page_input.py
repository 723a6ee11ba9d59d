"""PageInput: a person's mouse, wheel and keyboard input delivered to the real page, in order.

The viewer sends input in the recorded page's CSS pixels (its viewport, as the replay
shows it), which is what Playwright's `page.mouse` takes: it dispatches CDP
`Input.dispatchMouseEvent` / `dispatchKeyEvent` to the page's main frame, and Chromium
hit-tests from there, into iframes too, as it would a real mouse. One task delivers the
queue one event at a time, so a key's down, its text and its up arrive as typed; a run of
mouse moves waiting behind a slow page collapses into its last (a move is a position,
not an action). What is held down (buttons, keys) is tracked, and `release_all` lets go
of it when control is handed back, so no key stays pressed for the workflow after.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from pipeline.errors import describe_error
from pipeline.protocol import InputEvent, KeyInput, MouseInput, TextInput, WheelInput

MAX_QUEUED = 1000  # events waiting for a page that does not take them (a busy page)
_EVENT_S = 2.0  # one event's delivery; a page that takes longer is busy, the event dropped


class PageInput:
    """Delivers input events to whatever page `page()` is (None while it is reopened)."""

    def __init__(self, page: Callable[[], Page | None],
                 spawn: Callable[[Awaitable[Any], str], asyncio.Task[Any]],
                 log: logging.LoggerAdapter[Any]) -> None:
        self._page = page
        self._spawn = spawn
        self._log = log
        self._queue: deque[InputEvent] = deque()
        self._task: asyncio.Task[Any] | None = None
        self._buttons: set[str] = set()
        self._keys: dict[str, KeyInput] = {}
        self._at: tuple[float, float] | None = None  # where the mouse is
        self.delivered = 0
        self.dropped = 0

    def put(self, events: list[InputEvent]) -> None:
        for event in events:
            if len(self._queue) >= MAX_QUEUED:
                self.dropped += 1
                continue
            self._queue.append(event)
        if self._queue and (self._task is None or self._task.done()):
            self._task = self._spawn(self._deliver_all(), "page-input")

    async def release_all(self) -> None:
        """Drops what is queued and lets go of every button and key still held."""
        self._queue.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        x, y = self._at or (0.0, 0.0)
        ups: list[InputEvent] = [MouseInput(action="up", x=x, y=y, button=b)  # type: ignore[arg-type]
                                 for b in sorted(self._buttons)]
        ups += [KeyInput(action="up", key=k.key, code=k.code) for k in self._keys.values()]
        for event in ups:
            await self._deliver(event)

    async def close(self) -> None:
        self._queue.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _deliver_all(self) -> None:
        while self._queue:
            event = self._queue.popleft()
            if isinstance(event, MouseInput) and event.action == "move":
                while self._queue and isinstance(self._queue[0], MouseInput) \
                        and self._queue[0].action == "move":
                    event = self._queue.popleft()  # type: ignore[assignment]
            await self._deliver(event)

    async def _deliver(self, event: InputEvent) -> None:
        page = self._page()
        if page is None or page.is_closed():
            self.dropped += 1
            return
        try:
            await asyncio.wait_for(self._dispatch(page, event), _EVENT_S)
            self.delivered += 1
        except (TimeoutError, PlaywrightError) as exc:
            self.dropped += 1
            self._log.info("input %s not delivered: %s", event.kind, describe_error(exc))

    async def _dispatch(self, page: Page, event: InputEvent) -> None:
        if isinstance(event, MouseInput):
            if event.action == "up" and event.button not in self._buttons:
                return  # its press was not delivered (the viewer was behind)
            await self._move(page, event.x, event.y)
            if event.action in ("down", "click"):
                self._buttons.add(event.button)
                await page.mouse.down(button=event.button, click_count=event.clicks)
            if event.action in ("up", "click"):
                self._buttons.discard(event.button)
                await page.mouse.up(button=event.button, click_count=event.clicks)
        elif isinstance(event, WheelInput):
            await self._move(page, event.x, event.y)
            await page.mouse.wheel(event.dx, event.dy)
        elif isinstance(event, KeyInput):
            await self._key(page, event)
        elif isinstance(event, TextInput):
            await page.keyboard.insert_text(event.text)

    async def _move(self, page: Page, x: float, y: float) -> None:
        if self._at != (x, y):
            await page.mouse.move(x, y)
            self._at = (x, y)

    async def _key(self, page: Page, event: KeyInput) -> None:
        name = _playwright_key(event)
        if event.action == "down":
            try:
                await page.keyboard.down(name)
            except PlaywrightError as exc:
                # A character outside Playwright's US layout (é, €, ß): typed as text.
                if len(event.key) == 1 and "Unknown key" in str(exc):
                    await page.keyboard.insert_text(event.key)
                    return
                raise
            self._keys[name] = event
        elif name in self._keys:
            del self._keys[name]
            await page.keyboard.up(name)


def _playwright_key(event: KeyInput) -> str:
    """KeyboardEvent.key as Playwright names it: the same, but for a space."""
    return "Space" if event.key == " " else event.key


__all__ = ["MAX_QUEUED", "PageInput"]
