"""SessionBrowser: a session's Chromium connection, its browser context and its one recorded
page: opened, reopened after a crash, and closed within the stop's deadline.

The Chromium is the session's own or its node's shared one (a `SharedBrowser`: the
node's BrowserHost actor), driven through the session's own Playwright either way. The
context carries what every page of it needs before any page script runs: the network
guard and egress proxy (with RRSTREAM_BLOCK_PRIVATE_NETWORKS), the asset capture, the
page guard and the recorder. What the page then does is for others to hear (the
callbacks); this class only keeps the objects and their order of opening and closing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from playwright.async_api import Browser, BrowserContext, Page, Playwright
from playwright.async_api import Error as PlaywrightError

from pipeline.asset_capture import AssetCapture
from pipeline.browser import (
    BrowserEndpoint,
    connect_shared,
    launch_chromium,
    resolve_executable,
    start_playwright,
)
from pipeline.browser_dirs import BrowserDir, sweep
from pipeline.config import Settings
from pipeline.crashes import CrashKind
from pipeline.egress_proxy import EgressProxy, ProxyState
from pipeline.errors import (
    BrowserLaunchError,
    NavigationFailed,
    RRStreamError,
    describe_error,
    unwrap,
)
from pipeline.logs import Log
from pipeline.models import SessionSpec
from pipeline.navigation import open_url
from pipeline.network_guard import NetworkGuard
from pipeline.page_guard import Notice, PageGuard, guard_script
from pipeline.protocol import PageBatch
from pipeline.recorder import PageRecorder, StillOver, init_script
from pipeline.teardown import bounded, time_left

_HOST_RETRY_S = 10.0  # the node's browser host may be restarting (Ray restarts it)
_FLUSH_S = 1.0  # the final pagehide flush; a page that does not answer is crashed
_ANSWER_S = 2.0  # a crashed page asked to close

class SharedBrowser(Protocol):
    """A node's shared Chromium (the BrowserHost actor in production)."""

    async def endpoint(self, executable: str | None,
                       failed: BrowserEndpoint | None = None) -> BrowserEndpoint: ...


class SessionBrowser:
    """`on_crash(kind)` hears that the page or its whole browser is gone (only of the
    current ones); `on_page(page)` is given each new page before anything loads in it, to
    hear its events; the page guard's notices go to `on_notice`, the recorder's batches to
    `receiver()` (what it is when the context opens) and its still-over notices to
    `on_still_over`."""

    def __init__(self, session_id: str, settings: Settings, log: Log, *,
                 host: SharedBrowser | None, network_guard: NetworkGuard | None,
                 assets: AssetCapture,
                 receiver: Callable[[], Callable[[PageBatch], None]],
                 on_notice: Callable[[Notice], None],
                 on_still_over: Callable[[StillOver], None],
                 on_crash: Callable[[CrashKind], None],
                 on_page: Callable[[Page], None]) -> None:
        self.session_id = session_id
        self.host = host
        self.network_guard = network_guard
        self._settings = settings
        self._log = log
        self._assets = assets
        self._receiver = receiver
        self._on_notice = on_notice
        self._on_still_over = on_still_over
        self._on_crash = on_crash
        self._on_page = on_page
        # Only with the block on: a session without it pays nothing.
        self._egress = (EgressProxy(network_guard.policy, network_guard.report)
                        if network_guard is not None else None)
        self._dir: BrowserDir | None = None  # TMPDIR of this session's Playwright driver
        self._playwright: Playwright | None = None
        self._endpoint: BrowserEndpoint | None = None  # the shared Chromium last connected to
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._guard: PageGuard | None = None
        self.page: Page | None = None
        self.recorder: PageRecorder | None = None

    @property
    def connected(self) -> bool:
        """Whether a Chromium was connected to (and not lost since)."""
        return self._browser is not None

    def use_receiver(self, receiver: Callable[[PageBatch], None]) -> None:
        """The outbox swapped its receiver: the recorder calls the new one."""
        if self.recorder is not None:
            self.recorder.on_batch = receiver

    def explained(self, exc: NavigationFailed) -> NavigationFailed:
        """`exc`, saying which address was refused when the network policy caused it."""
        return (self.network_guard.explain(exc) if self.network_guard is not None
                else exc)

    # -- opening ---------------------------------------------------------------------------

    async def connect(self) -> None:
        playwright = await self._ensure_playwright()
        if self.host is None:
            browser = await launch_chromium(playwright, self._settings)
        else:
            browser = await self._connect_shared(playwright)
        browser.on("disconnected", self._disconnected)
        self._browser = browser

    async def open_context(self, spec: SessionSpec) -> None:
        if self._browser is None or not self._browser.is_connected():
            await self.connect()
        assert self._browser is not None
        viewport = spec.viewport
        proxy: dict[str, Any] = {}
        if self._egress is not None:
            # Every connection of the context, loopback too, goes through the session's
            # egress proxy, which connects only to addresses the policy checked; it
            # outlives a crashed context and serves the next.
            if self._egress.state is ProxyState.CREATED:
                await self._egress.start()
            proxy["proxy"] = self._egress.playwright_proxy()
        self._context = await self._browser.new_context(
            viewport={"width": viewport.width, "height": viewport.height},
            accept_downloads=True,  # so that a download is seen (and cancelled), not lost
            permissions=[],  # none granted; the guard denies each explicitly
            **proxy,
        )
        if self.network_guard is not None:
            await self.network_guard.install(self._context)
        if self._settings.asset_cache_bytes > 0:
            self._assets.install(self._context)
        self._guard = PageGuard(guard_script(self._settings), self._on_notice)
        await self._guard.install(self._context)
        self.recorder = PageRecorder(init_script(self._settings, spec), self._receiver(),
                                     self._on_still_over)
        await self.recorder.install(self._context)

    async def open_page(self) -> None:
        assert self._context is not None and self.recorder is not None
        assert self._guard is not None
        self._guard.expect_page()
        page = await self._context.new_page()
        self.page = page
        page.on("crash", self._page_crashed)
        self._on_page(page)
        if self.network_guard is not None:
            await self.network_guard.watch(page)
        await self._guard.attach(self._context, page)
        await self.recorder.attach(self._context, page)

    async def open(self, url: str) -> None:
        """Opens `url`; NavigationFailed when it did not open (`explained` says more)."""
        assert self.page is not None
        await open_url(self.page, url, timeout_ms=self._settings.navigation_timeout_s * 1000)

    def forget_browser(self) -> None:
        """Its browser crashed: its pages died with it, so no event of theirs is a crash
        of its own."""
        self._browser = self.page = None

    async def reopen(self, kind: CrashKind, spec: SessionSpec) -> None:
        """A new page after a crash of `kind` (in a new context, over a new connection,
        after a browser crash); the caller opens its URL."""
        page, self.page = self.page, None
        if kind is CrashKind.BROWSER:
            await self.open_context(spec)  # reconnects first: the old context died with it
        elif page is not None:
            await bounded(page.close(), _ANSWER_S, "closing the crashed page", self._log)
        await self.open_page()

    async def _ensure_playwright(self) -> Playwright:
        if self._playwright is None:
            await asyncio.to_thread(sweep)
            self._dir = await asyncio.to_thread(BrowserDir.create, "session")
            self._playwright = await start_playwright(self._settings, self._dir.path)
        return self._playwright

    async def _connect_shared(self, playwright: Playwright) -> Browser:
        """Connects to the node's shared Chromium. Its host may be restarting (Ray brings a
        killed one back), so what fails for another reason than the host's own error is
        tried again for a few seconds."""
        assert self.host is not None
        executable = resolve_executable(playwright, self._settings.chromium)
        deadline = time.monotonic() + _HOST_RETRY_S
        delay = 0.1
        while True:
            try:
                # Naming the lost endpoint after a crash makes the host replace it.
                self._endpoint = await self.host.endpoint(executable, self._endpoint)
                return await connect_shared(playwright, self._endpoint)
            except Exception as exc:
                cause = unwrap(exc)
                if isinstance(cause, RRStreamError):
                    raise cause from None
                if time.monotonic() + delay > deadline:
                    raise BrowserLaunchError(
                        executable, f"the node's shared browser could not be reached for "
                        f"{_HOST_RETRY_S:g} s ({describe_error(cause)})") from exc
                # Said once per reconnection; the tries after it are routine.
                self._log.log(logging.WARNING if delay == 0.1 else logging.DEBUG,
                              "session %s: the node's shared browser is unreachable (%s); "
                              "trying again for up to %g s", self.session_id,
                              describe_error(cause), _HOST_RETRY_S)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _disconnected(self, browser: Browser) -> None:
        if browser is self._browser:
            self._on_crash(CrashKind.BROWSER)

    def _page_crashed(self, page: Page) -> None:
        if page is self.page:
            self._on_crash(CrashKind.PAGE)

    # -- closing ---------------------------------------------------------------------------

    async def close(self, deadline: float) -> None:
        """The final flush, then everything opened, in reverse, by `deadline`
        (time.monotonic()); a page that does not answer has its renderer crashed."""
        page, recorder, log = self.page, self.recorder, self._log
        crashed = False
        # The final pagehide flush reaches the binding before the page goes away.
        if page is not None and recorder is not None and not page.is_closed():
            try:
                await asyncio.wait_for(recorder.flush(), _FLUSH_S)
            except TimeoutError:
                log.warning("session %s: the page did not answer within %.0f s (a script that "
                            "never yields, a dialog or a long snapshot); crashing its renderer "
                            "to stop it", self.session_id, _FLUSH_S)
                crashed = await recorder.crash_renderer()
            except (PlaywrightError, RRStreamError) as exc:
                log.info("session %s: no final flush: %s", self.session_id, describe_error(exc))
        if recorder is not None and not crashed:
            await bounded(recorder.detach(), time_left(deadline, 0.5), "detaching the recorder",
                          log)
        if self._guard is not None:
            await bounded(self._guard.close(), time_left(deadline, 0.5),
                          "stopping the page guard", log)
        await bounded(self._assets.close(), time_left(deadline, 0.5),
                      "ending the asset captures", log)
        if self._context is not None:
            await bounded(self._context.close(), time_left(deadline, 1.5),
                          "closing the browser context", log)
        if self._browser is not None:
            # A shared Chromium only loses this session's context and connection.
            await bounded(self._browser.close(), time_left(deadline, 1.0), "closing the browser",
                          log)
        if self.network_guard is not None:
            await bounded(self.network_guard.close(), time_left(deadline, 0.2),
                          "ending the network checks", log)
        if self._egress is not None:
            await bounded(self._egress.close(), time_left(deadline, 0.2),
                          "closing the egress proxy", log)
        if self._playwright is not None:
            await bounded(self._playwright.stop(), time_left(deadline, 1.0),
                          "stopping Playwright", log)

    async def remove_dir(self, seconds: float) -> None:
        """Ends whatever of this session's driver and Chromium still runs (the last step of
        a stop, once the browser is closed or given up on)."""
        if self._dir is not None:
            await bounded(asyncio.to_thread(self._dir.remove), seconds,
                          "removing the browser's temp directory", self._log)


__all__ = ["SessionBrowser", "SharedBrowser"]
