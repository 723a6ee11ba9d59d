"""Pages that do not open (unreachable, no answer, HTTP 500, a download) are reported on
the step and in status, and the session runs on (real Chromium, no Ray)."""

from __future__ import annotations

import pytest

from pipeline.browser_host import BrowserHost
from pipeline.config import Settings
from pipeline.models import SessionSpec, SessionState, SessionStatus, StepState
from pipeline.session import BrowserSession
from tests.conftest import free_port
from tests.integration.browser_procs import until
from tests.integration.fault_site import FaultSite
from tests.integration.sinks import ListSink


def broken_urls(fault_site: FaultSite) -> dict[str, tuple[str, str]]:
    """What can go wrong: the URL and the words the status must use."""
    return {
        "unreachable": (f"http://127.0.0.1:{free_port()}/", "connection was refused"),
        "no answer": (f"{fault_site.silent_url}/slow", "did not load within 2 s"),
        "HTTP 500": (fault_site.page("/error"),
                     "the server answered HTTP 500 Internal Server Error"),
        "download": (fault_site.page("/download"), "it is a download, not a page"),
    }


async def idle(session: BrowserSession) -> SessionStatus:
    await until(lambda: session.status().state is not SessionState.RUNNING, "workflow ended")
    return session.status()


@pytest.mark.parametrize("fault", ["unreachable", "no answer", "HTTP 500", "download"])
async def test_a_start_url_that_does_not_open_leaves_the_session_running(
        browser_host: BrowserHost, fault_site: FaultSite, fault: str) -> None:
    url, words = broken_urls(fault_site)[fault]
    sink = ListSink()
    session = BrowserSession("nav", Settings(navigation_timeout_s=2), sink, host=browser_host)
    status = await session.start(SessionSpec(url=url, steps=[{"action": "wait", "ms": 10}]))
    assert status.state is SessionState.RUNNING, status
    assert status.error is None and words in status.navigation_error, status
    assert status.navigation_error.startswith(f"could not open {url}")
    status = await idle(session)
    assert status.state is SessionState.IDLE and status.steps[0].state is StepState.DONE
    assert status.url == url, "the URL to retry after a crash is the one that failed"
    kinds = [w.kind for w in status.warnings]
    assert "navigation" in kinds
    if fault == "download":
        assert "download" in kinds
    if fault == "HTTP 500":  # the server's own error page is what viewers see
        await until(lambda: "the server broke" in sink.text(), "the 500 page was recorded")
    assert (await session.stop()).state is SessionState.STOPPED


@pytest.mark.parametrize("fault", ["unreachable", "no answer", "HTTP 500", "download"])
async def test_a_goto_step_that_does_not_open_fails_and_skips_the_rest(
        browser_host: BrowserHost, fault_site: FaultSite, fault: str) -> None:
    url, words = broken_urls(fault_site)[fault]
    sink = ListSink()
    session = BrowserSession("nav", Settings(), sink, host=browser_host)
    await session.start(SessionSpec(url=fault_site.page("/plain?name=first"), steps=[
        {"action": "goto", "url": url, "timeout_ms": 2_000},
        {"action": "click", "selector": "#add"},
    ]))
    status = await idle(session)
    assert status.state is SessionState.IDLE, status
    assert [s.state for s in status.steps] == [StepState.FAILED, StepState.SKIPPED]
    assert words in status.steps[0].error and words in status.navigation_error, status
    assert status.error.startswith("step 0 (goto) failed: could not open")
    assert (await session.stop()).state is SessionState.STOPPED


async def test_a_download_started_by_a_step_is_reported_not_fatal(browser_host: BrowserHost,
                                                                  fault_site: FaultSite) -> None:
    session = BrowserSession("dl", Settings(), ListSink(), host=browser_host)
    await session.start(SessionSpec(url=fault_site.page("/download-link"), steps=[
        {"action": "click", "selector": "#get"},
        {"action": "wait", "ms": 300},
    ]))
    status = await idle(session)
    assert [s.state for s in status.steps] == [StepState.DONE, StepState.DONE], status
    downloads = [w for w in status.warnings if w.kind == "download"]
    assert len(downloads) == 1 and "'data.bin'" in downloads[0].message
    assert status.navigation_error is None and status.error is None
    assert (await session.stop()).state is SessionState.STOPPED


async def test_opening_a_page_after_a_failed_one_clears_the_navigation_error(
        browser_host: BrowserHost, fault_site: FaultSite) -> None:
    sink = ListSink()
    session = BrowserSession("nav", Settings(), sink, host=browser_host)
    await session.start(SessionSpec(url=f"http://127.0.0.1:{free_port()}/", steps=[
        {"action": "goto", "url": fault_site.page("/plain?name=recovered")},
    ]))
    status = await idle(session)
    assert status.state is SessionState.IDLE and status.navigation_error is None, status
    assert status.url == fault_site.page("/plain?name=recovered")
    assert [w.kind for w in status.warnings] == ["navigation"], "the failure stays in history"
    await until(lambda: "recovered" in sink.text(), "the page that opened was recorded")
    await session.stop()
