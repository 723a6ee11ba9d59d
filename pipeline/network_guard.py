"""Enforces a session's AddressPolicy inside its browser, on every request the context
makes: navigations, subresources, iframes, fetch/XHR, workers, redirects, WebSockets.

Three hooks, because Playwright's request routing misses two of them:
- `context.route`: the first request of every navigation and subresource, in every page,
  frame and worker of the context; a refused one is aborted (net::ERR_BLOCKED_BY_CLIENT).
- the CDP Fetch domain on each page: Playwright calls no route handler for a redirect's
  next hop (its docs say so, and a test here shows it), so a redirect to an inside address
  would be followed unchecked; the page's own Fetch session sees each hop and fails it.
- `context.route_web_socket`: a page's WebSocket to a refused address is closed (1008)
  before it connects.

Refusals reach `on_block`, each URL once and ten at most; the rest are only counted.
Under these hooks the session's egress proxy (pipeline/egress_proxy.py) enforces the
same policy on every connection, for what they miss; they stay for their precise
navigation errors.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from playwright.async_api import BrowserContext, CDPSession, Page, Route, WebSocketRoute
from playwright.async_api import Error as PlaywrightError

from pipeline.errors import NavigationFailed, describe_error
from pipeline.network_policy import BLOCKED, AddressPolicy, Refusal

_log = logging.getLogger(__name__)
# Distinct refused URLs reported per session (a session keeps its last 50 warnings of
# every kind); more are only counted.
_REPORTED_MAX = 10
_EXPLAIN_WITHIN_S = 30.0  # a navigation's refusal explains its failure this long after
_POLICY_CLOSE = 1008  # WebSocket close code: policy violation
_ANY_SOCKET = re.compile(r"^wss?://")


class NetworkGuard:
    """One per session: `install` on each new context, `watch` each new page."""

    def __init__(self, policy: AddressPolicy, on_block: Callable[[Refusal], None]) -> None:
        self.policy = policy
        self.blocked = 0  # requests refused, all told
        self._on_block = on_block
        self._reported: set[tuple[str, str]] = set()
        self._navigation: tuple[float, Refusal, bool] | None = None  # when, why, redirected
        self._tasks: set[asyncio.Task[None]] = set()

    async def install(self, context: BrowserContext) -> None:
        await context.route("**/*", self._route)
        await context.route_web_socket(_ANY_SOCKET, self._socket)

    async def watch(self, page: Page) -> None:
        """Checks every redirect hop of `page`'s requests (its main frame's target: the
        page, its same-site frames, and the navigations of its cross-site frames)."""
        cdp = await page.context.new_cdp_session(page)
        cdp.on("Fetch.requestPaused", lambda event: self._spawn(self._paused(cdp, event)))
        await cdp.send("Fetch.enable", {"patterns": [{"urlPattern": "*",
                                                      "requestStage": "Request"}]})

    def report(self, refusal: Refusal) -> None:
        """A refusal of the egress proxy under these hooks (pipeline/egress_proxy.py): what
        they did not see, or saw resolve elsewhere, is counted and reported like theirs."""
        self._refused(refusal, navigation=False, redirected=False)

    def explain(self, exc: NavigationFailed) -> NavigationFailed:
        """`exc` in words when the guard caused it: which address was refused, and whether
        a redirect led there."""
        if self._navigation is None or "ERR_BLOCKED_BY_CLIENT" not in str(exc.__cause__):
            return exc
        at, refusal, redirected = self._navigation
        if time.monotonic() - at > _EXPLAIN_WITHIN_S:
            return exc
        self._navigation = None
        if redirected or refusal.url != exc.url:
            words = f"it redirected to {refusal.url}, which {refusal.reason}"
        else:
            words = f"it {refusal.reason}"
        explained = NavigationFailed(exc.url, f"{words}; {BLOCKED}")
        explained.__cause__ = exc.__cause__
        return explained

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the hooks -------------------------------------------------------------------------

    async def _route(self, route: Route) -> None:
        request = route.request
        refusal = await self.policy.check(request.url)
        try:
            if refusal is None:
                await route.continue_()
                return
            self._refused(refusal, navigation=request.is_navigation_request(), redirected=False)
            await route.abort("blockedbyclient")
        except PlaywrightError as exc:  # the page or its request went away meanwhile
            _log.debug("routing %s: %s", request.url, describe_error(exc))

    async def _paused(self, cdp: CDPSession, event: dict[str, Any]) -> None:
        request_id = event["requestId"]
        refusal = None
        if event.get("redirectedRequestId"):  # first hops are the route handler's
            refusal = await self.policy.check(event["request"]["url"])
        try:
            if refusal is None:
                await cdp.send("Fetch.continueRequest", {"requestId": request_id})
                return
            self._refused(refusal, navigation=event.get("resourceType") == "Document",
                          redirected=True)
            await cdp.send("Fetch.failRequest", {"requestId": request_id,
                                                 "errorReason": "BlockedByClient"})
        except PlaywrightError as exc:  # the page went away, or the request was cancelled
            _log.debug("redirect check of %s: %s", event["request"]["url"], describe_error(exc))

    async def _socket(self, socket: WebSocketRoute) -> None:
        refusal = await self.policy.check(socket.url)
        if refusal is None:
            socket.connect_to_server()
            return
        self._refused(refusal, navigation=False, redirected=False)
        try:
            # A close reason is at most 123 bytes.
            await socket.close(code=_POLICY_CLOSE,
                               reason=f"blocked: {refusal.reason}".encode()[:123].decode(
                                   errors="ignore"))
        except PlaywrightError as exc:
            _log.debug("closing the WebSocket to %s: %s", socket.url, describe_error(exc))

    # -- reporting -------------------------------------------------------------------------

    def _refused(self, refusal: Refusal, *, navigation: bool, redirected: bool) -> None:
        self.blocked += 1
        if navigation:
            self._navigation = (time.monotonic(), refusal, redirected)
        key = (refusal.url, refusal.reason)
        if key in self._reported or len(self._reported) >= _REPORTED_MAX:
            return
        self._reported.add(key)
        self._on_block(refusal)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


__all__ = ["NetworkGuard"]
