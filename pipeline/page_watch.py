"""PageWatch: what a session's page does that its status and warnings report, and where
the page is.

The main frame's URL (or the one it failed to open) is where a crashed page is reopened
and what a Checkpoint carries. A page that does not open (pipeline/navigation.py) is in
`navigation_error`; each loaded document is watched for its first rrweb snapshot
(pipeline/snapshot_watch.py: `recording_error`) and for a main thread that stops
answering (pipeline/busy_watch.py: `unresponsive_since`); downloads are cancelled,
requests the network policy refused and errors the page threw are reported. None of it
stops the session: it runs on, and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import Download, Frame, Page
from playwright.async_api import Error as PlaywrightError

from pipeline.busy_watch import BusyWatch
from pipeline.error_events import ErrorEvents
from pipeline.errors import NavigationFailed, RRStreamError, describe_error
from pipeline.logs import Log
from pipeline.models import WarningKind
from pipeline.navigation import timed_out
from pipeline.network_policy import Refusal
from pipeline.session_browser import SessionBrowser
from pipeline.snapshot_watch import SnapshotWatch
from pipeline.teardown import bounded
from pipeline.warning_log import WarningLog

_ANSWER_S = 2.0  # a page asked to stop loading, or a download to cancel


class PageWatch:
    """Watches `browser`'s current page. `spawn(coro, name)` runs a task the session keeps
    (and cancels when it stops); `url_changed()` is told when the main frame moved to
    another URL (the session reports a Checkpoint then)."""

    def __init__(self, session_id: str, snapshot_timeout_s: float, browser: SessionBrowser,
                 warnings: WarningLog, errors: ErrorEvents, log: Log, *,
                 spawn: Callable[[Awaitable[Any], str], asyncio.Task[Any]],
                 url_changed: Callable[[], None]) -> None:
        self.session_id = session_id
        self.last_url: str | None = None  # the main frame's URL, or the one it failed to open
        self.navigation_error: str | None = None
        self.recording_error: str | None = None
        self.unresponsive_since: float | None = None
        self._snapshot_timeout_s = snapshot_timeout_s
        self._browser = browser
        self._warnings = warnings
        self._errors = errors
        self._log = log
        self._spawn = spawn
        self._url_changed = url_changed
        self._watching: asyncio.Task[None] | None = None
        self._busy_watching: asyncio.Task[None] | None = None

    def attach(self, page: Page) -> None:
        """Hears `page`'s events (each new page, before anything loads in it)."""
        page.on("framenavigated", self._on_navigated)
        page.on("domcontentloaded", self._on_loaded)
        page.on("download", self._on_download)
        page.on("pageerror", self._on_page_error)

    def stop(self) -> None:
        """The page crashed: its document's watches end with it."""
        for task in (self._watching, self._busy_watching):
            if task is not None:
                task.cancel()

    async def navigation_failed(self, exc: NavigationFailed) -> None:
        self.navigation_error = str(exc)
        self._warnings.add(WarningKind.NAVIGATION, str(exc), exc.url)
        self._log.warning("session %s: %s", self.session_id, exc)
        recorder = self._browser.recorder
        if timed_out(exc) and recorder is not None:
            # Else the page would change whenever Chromium gives up on it, minutes later.
            await bounded(recorder.stop_loading(), _ANSWER_S,
                          "stopping the navigation that timed out", self._log)

    def blocked(self, refusal: Refusal) -> None:
        """The network policy refused one of the page's requests (pipeline/network_guard.py)."""
        self._warnings.add(WarningKind.BLOCKED_REQUEST, f"blocked: {refusal}", refusal.url)
        self._log.warning("session %s blocked a request: %s", self.session_id, refusal)

    # -- the page's events -----------------------------------------------------------------

    def _on_navigated(self, frame: Frame) -> None:
        page = self._browser.page
        if page is None or frame != page.main_frame:
            return
        url = frame.url
        if not url.startswith(("http:", "https:")):
            return  # Chromium's error page: the URL it failed to open stays the one to retry
        self.navigation_error = None
        if url != self.last_url:
            self.last_url = url
            self._url_changed()

    def _on_loaded(self, page: Page) -> None:
        if page is not self._browser.page:
            return
        self.stop()
        self._watching = self._busy_watching = None
        self.recording_error = None  # a new document: what was said of the last is moot
        self.unresponsive_since = None
        url = page.url
        if url.startswith(("http:", "https:")):
            self._watching = self._spawn(self._watch_snapshot(url), "snapshot-watch")
            self._busy_watching = self._spawn(self._watch_busy(url), "busy-watch")

    async def _watch_busy(self, url: str) -> None:
        recorder = self._browser.recorder
        assert recorder is not None

        def changed(since: float | None) -> None:
            self.unresponsive_since = since
            message = (f"the page's main thread stopped answering at {url} (a script that "
                       "never yields, or a task of many seconds); its renderer is busy "
                       "until it ends or the session stops" if since is not None
                       else f"the page at {url} answers again")
            self._warnings.add(WarningKind.UNRESPONSIVE, message, url,
                               key=f"unresponsive:{since is None}")
            self._log.warning("session %s: %s", self.session_id, message)

        try:
            await BusyWatch(changed).watch(recorder.state)
        except (PlaywrightError, RRStreamError) as exc:  # it navigated or went away meanwhile
            self._log.info("session %s: the busy check of %s ended: %s", self.session_id,
                           url, describe_error(exc))

    async def _watch_snapshot(self, url: str) -> None:
        recorder = self._browser.recorder
        assert recorder is not None
        watch = SnapshotWatch(self._snapshot_timeout_s,
                              lambda problem: self._recording_problem(url, problem))
        try:
            await watch.watch(recorder, url)
        except (PlaywrightError, RRStreamError) as exc:  # it navigated or went away meanwhile
            self._log.info("session %s: the snapshot check of %s ended: %s", self.session_id,
                           url, describe_error(exc))

    def _recording_problem(self, url: str, problem: str | None) -> None:
        if problem is None:
            self.recording_error = None
            self._warnings.add(WarningKind.RECORDING, f"{url} is recorded again", url)
            self._log.info("session %s: %s is recorded again", self.session_id, url)
            return
        if problem != self.recording_error:
            self._warnings.add(WarningKind.RECORDING, problem, url)
            self._log.warning("session %s: %s", self.session_id, problem)
        self.recording_error = problem

    def _on_download(self, download: Download) -> None:
        message = (f"the page started a download of {download.suggested_filename!r} "
                   f"from {download.url}; it was cancelled")
        self._warnings.add(WarningKind.DOWNLOAD, message, download.url)
        self._log.warning("session %s: %s", self.session_id, message)
        self._spawn(self._cancel_download(download), "cancel-download")

    async def _cancel_download(self, download: Download) -> None:
        try:
            await asyncio.wait_for(download.cancel(), _ANSWER_S)
        except (TimeoutError, PlaywrightError) as exc:
            self._log.warning("session %s: cancelling the download of %s failed: %s",
                              self.session_id, download.url, describe_error(exc))

    def _on_page_error(self, error: PlaywrightError) -> None:
        self._errors.add("page", f"the page threw: {error.message}")


__all__ = ["PageWatch"]
