"""A session always stops: within 5 s whatever its page does, its renderer's CPU released,
and every batch recorded before the stop handed on (real Chromium, no Ray)."""

from __future__ import annotations

import asyncio
import time

import psutil

from pipeline.browser_host import BrowserHost
from pipeline.config import Settings
from pipeline.models import SessionSpec, SessionState
from pipeline.session import BrowserSession
from tests.integration.browser_procs import (
    chromium_under,
    cpu_percent,
    renderers,
    until,
)
from tests.integration.fault_site import FaultSite
from tests.integration.sinks import ListSink


async def burning_renderers(browser_host: BrowserHost) -> dict[int, float]:
    """The browser_host's renderers using most of a core, measured over a second."""
    usage = await asyncio.to_thread(cpu_percent, renderers(chromium_under(browser_host.pid())), 1.0)
    # A whole core on an idle machine; less on two cores shared with other test runs.
    return {pid: cpu for pid, cpu in usage.items() if cpu > 15}


def own_chromium() -> set[int]:
    """Chromium started by this process's own Playwright drivers (sessions without a host;
    not the ones other test runs on the machine start)."""
    drivers = [p for p in psutil.Process().children() if "run-driver" in p.cmdline()]
    return {p.pid for d in drivers for p in chromium_under(d.pid)[1:]
            if "chrom" in p.name().lower()}


async def stop_within_5_s(session: BrowserSession) -> float:
    began = time.monotonic()
    status = await asyncio.wait_for(session.stop(), 10)
    took = time.monotonic() - began
    assert status.state is SessionState.STOPPED, status
    assert took < 5.0, f"stop took {took:.1f} s"
    return took


async def start_and_click_go(browser_host: BrowserHost, fault_site: FaultSite, page: str,
                             ) -> tuple[BrowserSession, ListSink]:
    sink = ListSink()
    session = BrowserSession("stuck", Settings(), sink, host=browser_host)
    status = await session.start(SessionSpec(url=fault_site.page(page), steps=[
        {"action": "click", "selector": "#go"},
    ]))
    assert status.state is SessionState.RUNNING, status
    await until(lambda: "marker before the" in sink.text(), "the marker was recorded")
    await asyncio.sleep(0.5)  # what the click started has begun
    return session, sink


async def test_a_page_in_an_endless_script_is_stopped_and_its_cpu_released(
        browser_host: BrowserHost, fault_site: FaultSite) -> None:
    session, sink = await start_and_click_go(browser_host, fault_site, "/loop")
    burning = await burning_renderers(browser_host)
    assert burning, "the page's renderer should be spinning"

    await stop_within_5_s(session)
    left = await asyncio.to_thread(cpu_percent, renderers(chromium_under(browser_host.pid())), 1.0)
    assert not {pid for pid, cpu in left.items() if pid in burning and cpu > 5}, (
        f"a renderer of the session still burns CPU: {left}")
    assert "marker before the loop" in sink.text(), "a batch recorded before the stop was lost"
    assert sink.closed
    assert browser_host.pid() is not None, "the shared browser lives on"


async def test_a_page_opening_dialog_after_dialog_is_stopped(browser_host: BrowserHost,
                                                             fault_site: FaultSite) -> None:
    # Each confirm() and alert() is pending until Playwright dismisses it, and the page
    # opens the next at once (it also asks before unloading).
    session, sink = await start_and_click_go(browser_host, fault_site, "/dialogs")
    before = set(renderers(chromium_under(browser_host.pid())))
    await stop_within_5_s(session)
    assert "marker before the dialogs" in sink.text()
    assert sink.closed
    # The context is closed by then; its renderer exits a moment later (on a loaded
    # machine, up to a second or two).
    deadline = time.monotonic() + 3
    while before & set(renderers(chromium_under(browser_host.pid()))):
        assert time.monotonic() < deadline, "its renderer is left"
        await asyncio.sleep(0.1)


async def test_a_page_busy_in_slow_snapshots_is_stopped(browser_host: BrowserHost,
                                                        fault_site: FaultSite) -> None:
    # 150,000 nodes take rrweb ~2.5 s to snapshot here, and the page changes every 100 ms,
    # so with a checkout every 500 ms it is snapshotting nearly all the time (without a byte
    # budget: under one, a snapshot this large is taken far less often).
    sink = ListSink()
    session = BrowserSession("huge", Settings(checkout_every_ms=500, max_event_bytes_per_s=0),
                             sink, host=browser_host)
    status = await session.start(SessionSpec(url=fault_site.page("/huge?nodes=150000&tick")))
    assert status.state is SessionState.RUNNING, status
    await until(lambda: sink.snapshots() >= 2, "a periodic checkout", timeout_s=60)
    recorded = len(sink.batches)
    await stop_within_5_s(session)
    assert len(sink.batches) >= recorded
    assert "tick " in sink.text()


async def test_a_session_with_its_own_chromium_also_stops_by_force(fault_site: FaultSite) -> None:
    before = own_chromium()
    sink = ListSink()
    session = BrowserSession("own", Settings(), sink)
    await session.start(SessionSpec(url=fault_site.page("/loop"), steps=[
        {"action": "click", "selector": "#go"},
    ]))
    await until(lambda: "marker before the loop" in sink.text(), "the marker was recorded")
    await asyncio.sleep(0.5)
    assert own_chromium() - before, "its Chromium runs under this process's driver"
    await stop_within_5_s(session)
    assert "marker before the loop" in sink.text()
    assert not own_chromium() - before, "its Chromium was left running"
