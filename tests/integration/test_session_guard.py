"""What a page may not do to its session: permissions, dialogs, popups, its privacy
options, its event rate and bytes, a core of its node (real Chromium in a shared
browser, no Ray)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.hostile_site import HostileSite, serve_hostile_site
from pipeline.browser_host import BrowserHost
from pipeline.config import Settings
from pipeline.models import SessionSpec, SessionState, WarningKind
from pipeline.renderer_priority import ChromiumRenderers
from pipeline.session import BrowserSession
from tests.integration.browser_procs import until
from tests.integration.sinks import ListSink

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hostile_site() -> Iterator[HostileSite]:
    with serve_hostile_site() as site:
        yield site


async def started(browser_host: BrowserHost, spec: SessionSpec,
                  settings: Settings | None = None) -> tuple[BrowserSession, ListSink]:
    sink = ListSink()
    session = BrowserSession("guarded", settings or Settings(), sink, host=browser_host)
    status = await session.start(spec)
    assert status.state in (SessionState.RUNNING, SessionState.IDLE), status
    return session, sink


async def test_every_permission_is_denied(browser_host: BrowserHost,
                                          hostile_site: HostileSite) -> None:
    session, sink = await started(browser_host, SessionSpec(url=hostile_site.page("/permissions")))
    try:
        await until(lambda: "position:" in sink.text(), "the page wrote what it got")
        text = sink.text()
        for name in ("geolocation", "notifications", "camera", "microphone", "clipboard-read"):
            assert f"{name}:denied" in text, text[-400:]
        assert "request:denied" in text and "position:refused 1" in text
        assert "granted" not in text
    finally:
        await session.stop()


async def test_dialogs_and_popups_the_guard_misses_are_dismissed_closed_and_reported(
        browser_host: BrowserHost, hostile_site: HostileSite) -> None:
    session, sink = await started(browser_host,
                                  SessionSpec(url=hostile_site.page("/native-disturbances")))
    try:
        await until(lambda: "native done" in sink.text(), "the page went on past its dialog")
        await until(lambda: session.status().popups_closed >= 1, "the popup was reported")
        status = session.status()
        assert status.dialogs_dismissed == 1 and status.popups_closed == 1
        kinds = {w.kind: w.message for w in status.warnings}
        assert kinds[WarningKind.DIALOG] == ('the page opened a dialog, dismissed at once: '
                                             'alert("native alert")')
        assert kinds[WarningKind.POPUP].startswith("the page tried to open a window, refused")
        assert browser_host.pid() is not None
    finally:
        await session.stop()


async def test_masked_and_blocked_content_never_reaches_the_stream(
        browser_host: BrowserHost, hostile_site: HostileSite) -> None:
    spec = SessionSpec(url=hostile_site.page("/private"), mask_all_inputs=True,
                       mask_text_selector=".secret", block_selector="#blocked",
                       steps=[{"action": "type", "selector": "#name", "text": "typed-secret-42",
                               "delay_ms": 5},
                              # rrweb's `input: last` records the value on `change` (blur).
                              {"action": "press", "selector": "#name", "key": "Tab"}])
    session, sink = await started(browser_host, spec)
    try:
        await until(lambda: session.status().state is SessionState.IDLE, "the typing ended")
        await asyncio.sleep(0.5)  # the last input event is handed on
        text = sink.text()
        assert "public text" in text, "the page is recorded"
        assert sink.snapshots() >= 1
        inputs = [e for e in sink.events() if e["type"] == 3 and e["data"]["source"] == 5]
        assert inputs and inputs[-1]["data"]["text"] == "*" * 15, inputs
        assert "typed-secret" not in text
        assert "4111" not in text
        assert "blocked content" not in text and "98765" not in text
        assert "rr_width" in text or "rr-block" in text, "the blocked element is a placeholder"
    finally:
        await session.stop()


async def test_a_page_over_the_event_limit_is_recorded_coarser_and_paused_not_thinned(
        browser_host: BrowserHost, hostile_site: HostileSite) -> None:
    settings = Settings(max_events_per_s=500)
    session, sink = await started(browser_host,
                                  SessionSpec(url=hostile_site.page("/event-flood")), settings)
    try:
        await until(lambda: session.status().stretches_dropped >= 1, "a stretch was left out",
                    timeout_s=30)
        status = session.status()
        assert status.sampling_level == 2
        messages = [w.message for w in status.warnings if w.kind is WarningKind.EVENT_RATE]
        assert any("over the limit of 500 (RRSTREAM_MAX_EVENTS_PER_S)" in m for m in messages)
        # The first pause is 1 s; a page still over as it ends is paused again, and that
        # message replaces the first in the same warning (one entry per kind of decision).
        assert any("recording paused for 1 s" in m or "; paused again for " in m
                   for m in messages), messages
        # Every change of sampling and every pause resumes with a checkout.
        assert sink.snapshots() >= 3
    finally:
        await session.stop()
    events = sink.events()
    # Between two snapshots the events come in order; a stretch left out lies between a
    # batch and the next checkout, never inside a segment.
    checkouts = [i for i, b in enumerate(sink.batches) if b.checkout]
    assert checkouts and checkouts[0] == 0
    assert events[0]["type"] == 4


async def test_a_page_over_the_byte_budget_is_paused_and_stays_paused_while_it_keeps_on(
        browser_host: BrowserHost, hostile_site: HostileSite) -> None:
    # Its whole body rewritten every frame: ~60 events/s, far under the event limit, but
    # hundreds of kilobytes each.
    settings = Settings(max_event_bytes_per_s=500_000)
    session, sink = await started(
        browser_host, SessionSpec(url=hostile_site.page("/rewrite-every-frame")), settings)
    try:
        await until(lambda: session.status().stretches_dropped >= 1, "a stretch was left out",
                    timeout_s=30)
        status = session.status()
        assert status.sampling_level == 0  # coarser sampling thins no mutation
        [message] = [w.message for w in status.warnings if w.kind is WarningKind.EVENT_RATE]
        assert "over the budget of 0.5 MB/s (RRSTREAM_MAX_EVENT_BYTES_PER_S)" in message
        assert "recording paused for 1 s" in message
        sent = len(sink.batches)
        # The page measures the end of each pause itself: still over, it stays paused, and
        # nothing of the flood is sent any more (frontend/src/recorder.js `probe`).
        await until(lambda: session.status().stretches_dropped >= 3,
                    "the pause went on, longer", timeout_s=30)
        [message] = [w.message for w in session.status().warnings
                     if w.kind is WarningKind.EVENT_RATE]
        assert "as its pause ended, still so: the page's events came to" in message
        assert "(measured in the page, nothing of it sent); paused again for 4 s" in message
        assert len(sink.batches) <= sent + 1, "at most what was in flight as it paused"
        assert sink.snapshots() == 1
    finally:
        await session.stop()
    assert sink.batches[0].checkout


async def test_a_paused_page_that_calms_down_is_recorded_again_from_a_checkout(
        browser_host: BrowserHost, hostile_site: HostileSite) -> None:
    settings = Settings(max_event_bytes_per_s=500_000)
    session, sink = await started(
        browser_host, SessionSpec(url=hostile_site.page("/rewrite-for?s=3")), settings)
    try:
        await until(lambda: session.status().stretches_dropped >= 1, "a stretch was left out",
                    timeout_s=30)
        await until(lambda: any('"calm"' in b.text for b in sink.batches if b.checkout),
                    "recording resumed with a checkout of the calm page", timeout_s=30)
        last = sink.batches[-1].last_ts
        await until(lambda: sink.batches[-1].last_ts > last, "its ticks recorded after it")
    finally:
        await session.stop()
    assert sink.snapshots() >= 2


@pytest.mark.parametrize("budget", [0, 400_000])
async def test_a_large_page_is_checked_out_no_more_often_than_a_share_of_the_byte_budget(
        browser_host: BrowserHost, hostile_site: HostileSite, budget: int) -> None:
    # ~730 kB of snapshot that ticks every 100 ms; a checkout is due every 0.5 s. Under a
    # 400 kB/s budget at most a quarter of it goes to checkouts: one every ~7.3 s.
    settings = Settings(checkout_every_ms=500, max_event_bytes_per_s=budget)
    session, sink = await started(
        browser_host, SessionSpec(url=hostile_site.page("/huge-dom?nodes=5000&tick_ms=100")),
        settings)
    try:
        await until(lambda: sink.snapshots() >= 1, "the first snapshot", timeout_s=30)
        first = sink.batches[-1].last_ts
        await until(lambda: sink.batches[-1].last_ts - first > 4_000, "4 s of ticks",
                    timeout_s=30)
        snapshots = sink.snapshots()
    finally:
        await session.stop()
    if budget:
        assert snapshots == 1, f"{snapshots} snapshots of a 730 kB page in 4 s"
    else:
        assert snapshots >= 3, f"only {snapshots}: a checkout is due every 0.5 s"
    assert session.status().stretches_dropped == 0  # the ticks are far under the budget


async def test_a_renderer_that_keeps_a_core_busy_runs_at_a_lower_priority_until_it_goes(
        browser_host: BrowserHost, hostile_site: HostileSite) -> None:
    # The canary page works a little all the time: another page at work, which the cap
    # is for (pipeline/renderer_priority.py).
    quiet, _ = await started(browser_host, SessionSpec(url=hostile_site.page("/canary")))
    spinning, _ = await started(browser_host,
                                SessionSpec(url=hostile_site.page("/infinite-loop")))
    try:
        await until(lambda: len(browser_host.lowered_renderers()) == 1,
                    "the spinning page's renderer was lowered", timeout_s=20)
        [lowered] = browser_host.lowered_renderers()
        assert os.getpriority(os.PRIO_PROCESS, lowered) == Settings().busy_renderer_nice
        browser = browser_host.pid()
        assert browser is not None
        others = set(ChromiumRenderers(browser).renderers()) - {lowered}
        assert others, "the quiet page has a renderer of its own"
        assert all(os.getpriority(os.PRIO_PROCESS, pid) < 10 for pid in others)
        threads = [int(t) for t in os.listdir(f"/proc/{lowered}/task")]
        assert len(threads) > 1
        assert {os.getpriority(os.PRIO_PROCESS, t) for t in threads} == {
            Settings().busy_renderer_nice}, "every thread of the renderer is lowered"
        cgroup = await asyncio.to_thread(Path(f"/proc/{lowered}/cgroup").read_text)
        if cgroups_writable():  # a v1 hierarchy of our own, as on this machine
            assert f"rrstream-renderer-{lowered}" in cgroup
            used = await cpu_share(lowered, 2.0)
            assert used < Settings().busy_renderer_cpu + 0.15, f"{used:.0%} of a core"
    finally:
        await spinning.stop()
        await quiet.stop()
    await until(lambda: browser_host.lowered_renderers() == [], "the gone renderer forgotten",
                timeout_s=10)
    left = await asyncio.to_thread(lambda: list(Path("/sys/fs/cgroup").glob(
        f"**/rrstream-renderer-{lowered}")))
    assert left == [], "its cgroup was removed"


def cgroups_writable() -> bool:
    """Whether this node lets us make a cgroup in a cgroup v1 cpu hierarchy (v2 is
    tested on files in tests/unit/test_cpu_caps.py)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            for mount in Path("/sys/fs/cgroup").iterdir():
                if "cpu" in mount.name.split(",") and (mount / "cpu.cfs_quota_us").exists():
                    probe = mount / path.lstrip("/") / "rrstream-probe"
                    try:
                        probe.mkdir()
                    except OSError:
                        return False
                    probe.rmdir()
                    return True
    return False


async def cpu_share(pid: int, seconds: float) -> float:
    """The share of one core `pid` used over the next `seconds`."""
    def ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime

    before = ticks()
    await asyncio.sleep(seconds)
    return (ticks() - before) / os.sysconf("SC_CLK_TCK") / seconds
