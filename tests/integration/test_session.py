"""BrowserSession with a real Chromium, streaming into a real SessionStream (no Ray)."""

from __future__ import annotations

import asyncio

import orjson
import psutil

from pipeline.config import Settings
from pipeline.models import SessionSpec, SessionState, StepState
from pipeline.protocol import PageBatch, encode_frame
from pipeline.session import BrowserSession
from pipeline.stream import SessionStream
from serve.client import StreamDecoder


class StreamerSink:
    def __init__(self, streamer: SessionStream) -> None:
        self.streamer = streamer
        self.pushes = 0

    async def push(self, batches: list[PageBatch]) -> int:
        self.pushes += 1
        return await self.streamer.push(batches)

    async def close(self) -> None:
        self.streamer.close()


def chromium_pids() -> set[int]:
    """Chromium started by this process's own Playwright driver (not by Ray's workers)."""
    drivers = [p for p in psutil.Process().children()
               if "playwright" in " ".join(p.cmdline()).lower()]
    return {c.pid for d in drivers for c in d.children(recursive=True)
            if "chrom" in c.name().lower()}


async def recorded_events(streamer: SessionStream) -> list[dict]:
    """Everything the stream holds, framed and read as a viewer reads it."""
    decoder = StreamDecoder(streamer.codec())
    frames = [decoder.read(encode_frame(streamer.session_id, [chunk]), None,
                           starts_over=index == 0)
              for index, chunk in enumerate((await streamer.read(0, 0)).chunks)]
    return [event for frame in frames for event in frame.events]


async def test_records_pages_frames_and_workflow(demo_site) -> None:
    streamer = SessionStream("t1", Settings())
    sink = StreamerSink(streamer)
    spec = SessionSpec(url=f"{demo_site.url}/index.html", steps=[
        {"action": "wait_for", "frame": "#widget", "selector": "#widget-button"},
        {"action": "click", "frame": "#widget", "selector": "#widget-button"},
        {"action": "click", "selector": "#nav-list"},
        {"action": "wait_for", "selector": "#add-item"},
        {"action": "click", "selector": "#add-item"},
        {"action": "type", "selector": "#new-item", "text": "hello from the test", "delay_ms": 5},
        {"action": "press", "selector": "#new-item", "key": "Enter"},
        {"action": "wait", "ms": 300},
    ])
    session = BrowserSession("t1", Settings(), sink)
    status = await session.start(spec)
    assert status.state is SessionState.RUNNING, status.error
    assert chromium_pids()
    for _ in range(200):
        if session.status().state is SessionState.IDLE:
            break
        await asyncio.sleep(0.1)
    status = session.status()
    assert status.state is SessionState.IDLE, status
    assert [s.state for s in status.steps] == [StepState.DONE] * len(spec.steps)
    assert status.url.endswith("/list.html")

    status = await session.stop()
    assert status.state is SessionState.STOPPED
    assert not chromium_pids(), "Chromium left running after stop"
    assert (await session.stop()).state is SessionState.STOPPED  # idempotent

    events = await recorded_events(streamer)
    text = orjson.dumps(events).decode()
    metas = [e for e in events if e["type"] == 4]
    assert len(metas) >= 2, "expected a checkout per page (home, list)"
    assert any(m["data"]["href"].endswith("/list.html") for m in metas)
    assert "hello from the test" in text
    assert "Widget clicked" in text, "cross-origin iframe events missing"
    timestamps = [e["timestamp"] for e in events]
    assert timestamps == sorted(timestamps)
    # One handover per batch, never one per event.
    assert sink.pushes < len(events)
    assert streamer.stats().ended


async def test_a_step_failure_is_recorded_and_the_page_stays_live(demo_site) -> None:
    streamer = SessionStream("t2", Settings())
    spec = SessionSpec(url=f"{demo_site.url}/index.html", steps=[
        {"action": "click", "selector": "#does-not-exist", "timeout_ms": 300},
        {"action": "wait", "ms": 10},
    ])
    session = BrowserSession("t2", Settings(), StreamerSink(streamer))
    await session.start(spec)
    for _ in range(100):
        if session.status().state is SessionState.IDLE:
            break
        await asyncio.sleep(0.1)
    status = session.status()
    assert [s.state for s in status.steps] == [StepState.FAILED, StepState.SKIPPED]
    assert "step 0 (click) failed" in status.error
    await session.stop()


async def test_an_unreachable_start_url_leaves_the_session_running() -> None:
    from tests.conftest import free_port

    streamer = SessionStream("t3", Settings())
    url = f"http://127.0.0.1:{free_port()}/"
    session = BrowserSession("t3", Settings(), StreamerSink(streamer))
    status = await session.start(SessionSpec(url=url))
    # Chromium shows its error page; the reason is in the status, not a failure.
    assert status.state in (SessionState.RUNNING, SessionState.IDLE), status
    assert status.error is None and status.url == url
    assert "connection was refused" in status.navigation_error, status
    assert [w.kind for w in status.warnings] == ["navigation"]
    assert (await session.stop()).state is SessionState.STOPPED
    assert not chromium_pids()


async def test_stop_while_starting_wins_cleanly(demo_site) -> None:
    streamer = SessionStream("t4", Settings())
    session = BrowserSession("t4", Settings(), StreamerSink(streamer))
    starting = asyncio.create_task(session.start(SessionSpec(url=f"{demo_site.url}/index.html")))
    await asyncio.sleep(0.3)
    stopped = await session.stop()
    assert stopped.state is SessionState.STOPPED
    assert (await starting).state is SessionState.STOPPED
    assert not chromium_pids()
    assert streamer.stats().ended


async def test_a_warmed_up_session_only_opens_a_page(demo_site) -> None:
    streamer = SessionStream("t5", Settings())
    session = BrowserSession("t5", Settings(), StreamerSink(streamer))
    await session.warm_up()
    launched = chromium_pids()
    assert launched and session.status().state is SessionState.PENDING
    status = await session.start(SessionSpec(url=f"{demo_site.url}/index.html"))
    assert status.state is SessionState.RUNNING
    assert launched <= chromium_pids(), "start must reuse the warm browser"
    await session.stop()
    assert not chromium_pids()
