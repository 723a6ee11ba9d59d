"""Navigation errors in words (pipeline/navigation.py); the real pages are in
tests/integration/test_session_navigation.py."""

from __future__ import annotations

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from pipeline.errors import NavigationFailed
from pipeline.navigation import describe, page_gone


def test_network_errors_are_said_in_words_with_chromiums_code() -> None:
    refused = PlaywrightError("Page.goto: net::ERR_CONNECTION_REFUSED at http://127.0.0.1:9/\n"
                              "Call log: …")
    assert describe(refused, 30_000) == ("the connection was refused (nothing listens there) "
                                         "(net::ERR_CONNECTION_REFUSED)")
    odd = PlaywrightError("Page.goto: net::ERR_QUIC_PROTOCOL_ERROR at http://a.test/")
    assert describe(odd, 30_000) == "Chromium reported net::ERR_QUIC_PROTOCOL_ERROR"


def test_a_timeout_and_a_download_say_what_they_are() -> None:
    timeout = PlaywrightTimeoutError("Page.goto: Timeout 2500ms exceeded.")
    assert describe(timeout, 2_500) == "it did not load within 2.5 s"
    download = PlaywrightError("Page.goto: Download is starting")
    assert describe(download, 30_000).startswith("it is a download, not a page")


def test_errors_of_a_page_that_is_gone_are_not_navigation_errors() -> None:
    assert page_gone(PlaywrightError("Page.goto: Target crashed "))
    assert page_gone(PlaywrightError("Target page, context or browser has been closed"))
    assert not page_gone(PlaywrightError("Page.goto: net::ERR_CONNECTION_REFUSED at x"))
    assert not page_gone(RuntimeError("Target crashed"))  # only Playwright's own


def test_the_error_names_the_url() -> None:
    error = NavigationFailed("http://a.test/x", "the server answered HTTP 500")
    assert str(error) == "could not open http://a.test/x: the server answered HTTP 500"
    assert (error.url, error.reason) == ("http://a.test/x", "the server answered HTTP 500")
