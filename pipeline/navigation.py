"""Opening a URL in a page, and saying in words why it did not open.

A page that does not open is not a broken session: Chromium shows its error page (or the
server's error answer) and the session runs on, with the reason on the step and in its
status. Only an error that means the page itself is gone (it crashed, or its browser or
context closed) propagates as it is, for crash recovery to handle.
"""

from __future__ import annotations

import re

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from pipeline.errors import NavigationFailed

# Chromium's network errors a person is likely to meet, in words.
_NET_ERRORS = {
    "ERR_CONNECTION_REFUSED": "the connection was refused (nothing listens there)",
    "ERR_CONNECTION_RESET": "the connection was reset",
    "ERR_CONNECTION_CLOSED": "the server closed the connection without answering",
    "ERR_EMPTY_RESPONSE": "the server closed the connection without answering",
    "ERR_CONNECTION_TIMED_OUT": "connecting timed out",
    "ERR_TIMED_OUT": "the server did not answer in time",
    "ERR_NAME_NOT_RESOLVED": "its host name could not be resolved",
    "ERR_ADDRESS_UNREACHABLE": "its address is unreachable",
    "ERR_ADDRESS_INVALID": "its address is invalid",
    "ERR_UNSAFE_PORT": "Chromium refuses that port",
    "ERR_INVALID_RESPONSE": "the server's answer was not valid HTTP",
    "ERR_TOO_MANY_REDIRECTS": "it redirects in a loop",
    "ERR_ABORTED": "the navigation was aborted",
    "ERR_BLOCKED_BY_CLIENT": "the browser blocked it",
    "ERR_BLOCKED_BY_RESPONSE": "the server's headers forbid showing it",
    "ERR_SSL_PROTOCOL_ERROR": "the TLS handshake failed",
}
_NET_ERROR = re.compile(r"net::(ERR_[A-Z_]+)")
_ERROR_PAGE = "chrome-error://chromewebdata/"
_ERROR_PAGE_WAIT_MS = 2_000
_GONE = ("Target crashed", "has been closed", "Target closed", "Browser closed",
         "Connection closed")


def page_gone(exc: BaseException) -> bool:
    """The error means the page (or its context, browser, driver) is gone, not that one
    action on it failed."""
    text = str(exc)
    return isinstance(exc, PlaywrightError) and any(marker in text for marker in _GONE)


def describe(exc: PlaywrightError, timeout_ms: float) -> str:
    """What went wrong opening a URL, in words."""
    if isinstance(exc, PlaywrightTimeoutError):
        return f"it did not load within {timeout_ms / 1000:g} s"
    text = str(exc)
    if "Download is starting" in text:
        return "it is a download, not a page (the download was cancelled)"
    found = _NET_ERROR.search(text)
    if found:
        code = found.group(1)
        words = _NET_ERRORS.get(code)
        return f"{words} (net::{code})" if words else f"Chromium reported net::{code}"
    return text.splitlines()[0].removeprefix("Page.goto: ")


async def open_url(page: Page, url: str, *, wait_until: str = "load",
                   timeout_ms: float = 30_000) -> None:
    """Opens `url`; raises NavigationFailed when it did not open (an HTTP error status
    counts: the page shows the server's error answer, not what was asked for)."""
    try:
        response = await page.goto(url, wait_until=wait_until,  # type: ignore[arg-type]
                                   timeout=timeout_ms)
    except PlaywrightError as exc:
        if page_gone(exc):
            raise
        if _NET_ERROR.search(str(exc)):
            await _error_page_shown(page)
        raise NavigationFailed(url, describe(exc, timeout_ms)) from exc
    if response is not None and response.status >= 400:
        reason = f"{response.status} {response.status_text}".strip()
        raise NavigationFailed(url, f"the server answered HTTP {reason}")


async def _error_page_shown(page: Page) -> None:
    """Chromium commits its error page a moment after goto() raised a network error; a
    navigation started before that is interrupted by it, so wait for it first."""
    try:
        await page.wait_for_url(_ERROR_PAGE, timeout=_ERROR_PAGE_WAIT_MS)
    except PlaywrightTimeoutError:
        return  # Chromium showed none (an aborted navigation leaves the page as it was)


def timed_out(exc: NavigationFailed) -> bool:
    """The page did not load in time, and its navigation may still be pending."""
    return isinstance(exc.__cause__, PlaywrightTimeoutError)


__all__ = ["describe", "open_url", "page_gone", "timed_out"]
