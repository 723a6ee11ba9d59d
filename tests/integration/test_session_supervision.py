"""What a supervisor sees of a session (checkpoints) and does for it (a new stream), with
fakes for the supervisor and the sinks and a real Chromium (no Ray)."""

from __future__ import annotations

import asyncio
import time

import orjson

from pipeline.browser_host import BrowserHost
from pipeline.config import Settings
from pipeline.models import Checkpoint, SessionSpec, SessionState, StepState
from pipeline.session import BrowserSession
from tests.integration.browser_procs import crash_page, until
from tests.integration.fault_site import FaultSite
from tests.integration.sinks import ListSink


class Supervisor:
    """Records what the session tells it."""

    def __init__(self) -> None:
        self.checkpoints: list[Checkpoint] = []
        self.lost: list[str] = []

    def report(self, session_id: str, checkpoint: Checkpoint) -> None:
        self.checkpoints.append(checkpoint)

    def stream_lost(self, session_id: str) -> None:
        self.lost.append(session_id)


async def supervised(host: BrowserHost, url: str, settings: Settings,
                     ) -> tuple[BrowserSession, ListSink, Supervisor]:
    """A session with a fake supervisor, once its page's first snapshot is out."""
    supervisor, sink = Supervisor(), ListSink("old")
    session = BrowserSession("sup", settings, sink, host=host, supervisor=supervisor)
    await session.start(SessionSpec(url=url))
    await until(lambda: sink.snapshots() == 1, "the first snapshot")
    return session, sink, supervisor


def first_batch_events(sink: ListSink) -> list[int]:
    return [e["type"] for e in orjson.loads(sink.batches[0].text)]


async def test_checkpoints_follow_the_steps_and_the_url_with_growing_versions(
        browser_host: BrowserHost, fault_site: FaultSite) -> None:
    supervisor = Supervisor()
    session = BrowserSession("sup", Settings(), ListSink(), host=browser_host,
                             supervisor=supervisor)
    await session.start(SessionSpec(url=fault_site.page("/plain?name=one"), steps=[
        {"action": "click", "selector": "#add"},
        {"action": "goto", "url": fault_site.page("/plain?name=two")},
        {"action": "wait", "ms": 50},
    ]))
    await until(lambda: session.status().state is SessionState.IDLE, "workflow done")
    await asyncio.sleep(0.1)
    checkpoints = supervisor.checkpoints
    versions = [c.version for c in checkpoints]
    assert versions == sorted(set(versions)) and versions[0] == 1, versions
    last = checkpoints[-1]
    assert last.step == 3 and last.url == fault_site.page("/plain?name=two")
    assert [s.state for s in last.steps] == [StepState.DONE] * 3
    # Each step was seen running, and the URL change on its own.
    assert {c.step for c in checkpoints} == {0, 1, 2, 3}
    assert any(c.url == fault_site.page("/plain?name=two") and c.step == 1 for c in checkpoints)
    await session.stop()
    reported = len(supervisor.checkpoints)
    await asyncio.sleep(0.1)
    assert len(supervisor.checkpoints) == reported, "no reports once it has ended"


async def test_a_lost_stream_waits_for_a_new_one_which_starts_at_a_checkout(
        browser_host: BrowserHost, fault_site: FaultSite) -> None:
    session, old, supervisor = await supervised(
        browser_host, fault_site.page("/plain?name=lost&tick=100"),
        Settings(checkout_every_ms=600_000))
    old.fail = True  # the page's next change is a push that fails
    await until(lambda: supervisor.lost == ["sup"], "the supervisor told")
    status = session.status()
    assert status.state is SessionState.IDLE and status.stream_lost_at is not None, status
    assert status.error is None
    await asyncio.sleep(0.5)  # more changes while it is lost: dropped, not told again
    assert supervisor.lost == ["sup"] and old.failed_pushes == 1

    new = ListSink("new")
    session.attach_stream(new)
    await until(lambda: new.batches, "the new stream's first batch")
    assert new.batches[0].checkout and first_batch_events(new)[:2] == [4, 2], (
        "the new stream must start with a Meta + FullSnapshot")
    await until(lambda: len(new.batches) >= 2, "batches after the checkout")
    status = session.status()
    assert status.stream_lost_at is None and status.state is SessionState.IDLE
    assert [w.kind for w in status.warnings] == ["stream_lost", "stream_lost"]
    await session.stop()
    assert new.closed and not old.closed


async def test_a_stream_not_reopened_in_time_fails_the_session(browser_host: BrowserHost,
                                                               fault_site: FaultSite) -> None:
    session, sink, _ = await supervised(
        browser_host, fault_site.page("/plain?name=gone&tick=100"),
        Settings(stream_reattach_timeout_s=1.0))
    sink.fail = True
    lost_at = time.monotonic()
    status = await asyncio.wait_for(session.wait_stopped(), 10)
    assert time.monotonic() - lost_at >= 1.0
    assert status.state is SessionState.FAILED
    assert status.error == "its stream was lost and not reopened within 1 s"


async def test_without_a_supervisor_a_lost_stream_fails_the_session(browser_host: BrowserHost,
                                                                     fault_site: FaultSite) -> None:
    sink = ListSink()
    session = BrowserSession("alone", Settings(), sink, host=browser_host)
    await session.start(SessionSpec(url=fault_site.page("/plain?name=alone&tick=100")))
    await until(lambda: sink.snapshots() == 1, "the first snapshot")
    sink.fail = True
    status = await asyncio.wait_for(session.wait_stopped(), 10)
    assert status.state is SessionState.FAILED
    assert status.error is not None and status.error.startswith("stream lost: ")
    assert status.error.endswith("sink: the stream's actor died")


async def test_a_stream_reopened_while_the_page_recovers_from_a_crash(
        browser_host: BrowserHost, fault_site: FaultSite) -> None:
    session, old, supervisor = await supervised(
        browser_host, fault_site.page("/plain?name=crashing"), Settings(checkout_every_ms=600_000))
    endpoint = await browser_host.endpoint(None)
    await crash_page(endpoint, "crashing")
    new = ListSink("new")
    session.attach_stream(new)  # at once, while the page is being reopened
    await until(lambda: new.batches and session.status().page_crashes == 1,
                "the reopened page streams to the new stream")
    assert first_batch_events(new)[:2] == [4, 2]
    assert old.snapshots() == 1, "nothing of the reopened page went to the old stream"
    assert any(c.url == fault_site.page("/plain?name=crashing") for c in supervisor.checkpoints)
    await session.stop()


async def test_attach_stream_is_a_no_op_once_the_session_ended(browser_host: BrowserHost,
                                                               fault_site: FaultSite) -> None:
    sink = ListSink()
    session = BrowserSession("sup", Settings(), sink, host=browser_host, supervisor=Supervisor())
    await session.start(SessionSpec(url=fault_site.page("/plain?name=ended")))
    await session.stop()
    late = ListSink("late")
    session.attach_stream(late)
    await asyncio.sleep(0.1)
    assert late.batches == [] and session.status().state is SessionState.STOPPED
