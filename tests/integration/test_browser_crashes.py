"""Crashes of the shared Chromium (SIGKILL) and of one renderer (CDP `Page.crash`): the
sessions come back at their URLs and stream, within a crash budget (real Chromium, no
Ray)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from pipeline.browser_host import BrowserHost
from pipeline.config import Settings
from pipeline.models import SessionSpec, SessionState, StepState
from pipeline.session import BrowserSession
from tests.integration.browser_procs import crash_page, until
from tests.integration.fault_site import FaultSite
from tests.integration.sinks import ListSink

# No periodic checkouts: a second FullSnapshot comes only from a reopened page.
SETTINGS = Settings(checkout_every_ms=600_000)


class Metrics:
    """Stands in for SessionMetrics (a Ray metric): the kinds of restarts counted."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def restarted(self, kind: str) -> None:
        self.kinds.append(kind)


async def start(browser_host: BrowserHost, url: str, settings: Settings = SETTINGS, steps=(),
                name: str = "s") -> tuple[BrowserSession, ListSink, Metrics]:
    sink, metrics = ListSink(), Metrics()
    session = BrowserSession(name, settings, sink, host=browser_host, metrics=metrics)  # type: ignore[arg-type]
    status = await session.start(SessionSpec(url=url, steps=list(steps)))
    assert status.state is SessionState.RUNNING, status
    await until(lambda: sink.snapshots() == 1, "the first snapshot")
    return session, sink, metrics


async def test_eight_sessions_are_back_after_the_shared_browser_is_killed(
        browser_host: BrowserHost, fault_site: FaultSite) -> None:
    urls = [fault_site.page(f"/plain?name=session-{i}") for i in range(8)]
    started = await asyncio.gather(*(start(browser_host, url, name=f"s{i}")
                                     for i, url in enumerate(urls)))
    crashed = browser_host.pid()
    assert crashed is not None and browser_host.launches() == 1
    killed_at = time.monotonic()
    os.kill(crashed, signal.SIGKILL)

    relaunched = await until(lambda: browser_host.pid() not in (None, crashed),
                             "Chromium relaunched")
    assert relaunched < 3.0, f"relaunched after {relaunched:.1f} s"
    back = await until(lambda: all(sink.snapshots() == 2 for _, sink, _ in started),
                       "every session streams its reopened page")
    print(f"\nrelaunched after {relaunched:.2f} s; all 8 streaming again after "
          f"{time.monotonic() - killed_at:.2f} s")
    assert back < 10.0
    assert browser_host.launches() == 2, "one relaunch for all the sessions"
    for (session, sink, metrics), url in zip(started, urls, strict=True):
        status = session.status()
        assert status.state is SessionState.IDLE and status.url == url, status
        assert (status.browser_crashes, status.page_crashes, status.browser_restarts) == (1, 0, 1)
        assert [w.kind for w in status.warnings] == ["browser_crash"]
        assert metrics.kinds == ["browser"]
        assert url.rsplit("=", 1)[1] in sink.text()
    await asyncio.gather(*(session.stop() for session, _, _ in started))


async def test_a_renderer_crash_reopens_that_page_only(browser_host: BrowserHost,
                                                       fault_site: FaultSite) -> None:
    page = fault_site.page
    victim, victim_sink, metrics = await start(browser_host, page("/plain?name=victim"))
    bystander, bystander_sink, _ = await start(browser_host, page("/plain?name=bystander"))
    await crash_page(await browser_host.endpoint(None), "victim")
    await until(lambda: victim_sink.snapshots() == 2, "the victim's page reopened")
    status = victim.status()
    assert (status.page_crashes, status.browser_crashes, status.state) == (
        1, 0, SessionState.IDLE), status
    assert status.url == fault_site.page("/plain?name=victim") and metrics.kinds == ["page"]
    assert bystander_sink.snapshots() == 1 and bystander.status().page_crashes == 0
    assert browser_host.launches() == 1, "the browser itself lived on"
    await asyncio.gather(victim.stop(), bystander.stop())


async def test_the_step_running_when_the_page_crashed_runs_again(browser_host: BrowserHost,
                                                                 fault_site: FaultSite) -> None:
    session, sink, _ = await start(browser_host, fault_site.page("/plain?name=stepping"), steps=[
        {"action": "wait", "ms": 1_500},
        {"action": "click", "selector": "#add"},
    ])
    await crash_page(await browser_host.endpoint(None), "stepping")
    await until(lambda: session.status().state is SessionState.IDLE, "workflow done")
    status = session.status()
    assert [s.state for s in status.steps] == [StepState.DONE, StepState.DONE], status
    assert [s.attempts for s in status.steps] == [2, 1]
    assert sink.snapshots() == 2
    await session.stop()


async def test_one_crash_too_many_within_the_window_fails_the_session(
        browser_host: BrowserHost, fault_site: FaultSite) -> None:
    session, sink, _ = await start(browser_host, fault_site.page("/plain?name=fragile"))
    for crash in range(1, 5):
        await crash_page(await browser_host.endpoint(None), "fragile")
        if crash < 4:
            await until(lambda c=crash: sink.snapshots() == c + 1, f"reopened after crash {crash}")
    status = await asyncio.wait_for(session.wait_stopped(), 10)
    assert status.state is SessionState.FAILED
    assert status.error == "the page crashed 4 times within 60 s"
    assert status.page_crashes == 4 and status.browser_restarts == 3


async def test_browser_crashes_past_the_budget_fail_with_the_count(browser_host: BrowserHost,
                                                                   fault_site: FaultSite) -> None:
    session, sink, _ = await start(browser_host, fault_site.page("/plain?name=doomed"))
    for crash in range(1, 5):
        pid = browser_host.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        if crash < 4:
            await until(lambda c=crash: sink.snapshots() == c + 1, f"reopened after crash {crash}")
    status = await asyncio.wait_for(session.wait_stopped(), 10)
    assert status.state is SessionState.FAILED
    assert status.error == "the browser crashed 4 times within 60 s"


async def test_crashes_spread_out_never_fail_the_session(browser_host: BrowserHost,
                                                         fault_site: FaultSite) -> None:
    # One crash a second allowed; they come 1.3 s apart.
    settings = SETTINGS.model_copy(update={"max_browser_crashes": 1, "crash_window_s": 1.0})
    session, sink, _ = await start(browser_host, fault_site.page("/plain?name=unlucky"), settings)
    for crash in range(1, 4):
        began = time.monotonic()
        await crash_page(await browser_host.endpoint(None), "unlucky")
        await until(lambda c=crash: sink.snapshots() == c + 1, f"reopened after crash {crash}")
        await asyncio.sleep(max(0.0, 1.3 - (time.monotonic() - began)))
    status = session.status()
    assert status.state is SessionState.IDLE and status.page_crashes == 3, status
    await session.stop()
