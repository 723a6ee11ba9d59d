"""Pages that make recording hard: a strict CSP, a broken MutationObserver, a `load` that
never comes, a snapshot that takes seconds. Each is recorded, or the problem is detected,
retried and reported in status (real Chromium, no Ray)."""

from __future__ import annotations

import pytest

from pipeline.browser_host import BrowserHost
from pipeline.config import Settings
from pipeline.models import SessionSpec, SessionState
from pipeline.session import BrowserSession
from tests.integration.browser_procs import until
from tests.integration.fault_site import FaultSite
from tests.integration.sinks import ListSink

# Every test looks at the recorder one second after each page load.
SETTINGS = Settings(snapshot_timeout_s=1.0)


async def run(browser_host: BrowserHost, url: str, steps: list[dict],
              settings: Settings = SETTINGS) -> tuple[BrowserSession, ListSink]:
    sink = ListSink()
    session = BrowserSession("rec", settings, sink, host=browser_host)
    status = await session.start(SessionSpec(url=url, steps=steps))
    assert status.state is SessionState.RUNNING, status
    await until(lambda: session.status().state is SessionState.IDLE, "workflow done")
    return session, sink


async def test_a_page_whose_csp_forbids_every_script_is_recorded(browser_host: BrowserHost,
                                                                 fault_site: FaultSite) -> None:
    session, sink = await run(browser_host, fault_site.page("/csp"), [
        {"action": "type", "selector": "#name", "text": "typed under csp", "delay_ms": 1},
        {"action": "press", "selector": "#name", "key": "Tab"},
        {"action": "wait", "ms": 1_500},  # past the recorder check
    ])
    await until(lambda: "typed under csp" in sink.text(), "the typed text was recorded")
    text = sink.text()
    # The CSP held (the page's own inline script did not run), and still the recorder ran.
    assert "no script ran" in text and "a page script ran" not in text
    assert sink.snapshots() >= 1
    status = session.status()
    assert status.recording_error is None, status
    assert not [w for w in status.warnings if w.kind == "recording"]
    await session.stop()


@pytest.mark.parametrize("how", ["undefined", "fake", "throw", "dcl"])
async def test_a_page_that_breaks_mutation_observer_is_still_recorded(
        browser_host: BrowserHost, fault_site: FaultSite, how: str) -> None:
    session, sink = await run(browser_host, fault_site.page(f"/mutation-observer?how={how}"), [
        {"action": "click", "selector": "#add"},
        {"action": "wait", "ms": 1_500},
    ])
    # The click's DOM change reaches the stream as an incremental mutation, which only
    # an observer that works can produce.
    await until(lambda: "added after the start" in sink.text(), "the mutation was recorded")
    mutations = [e for e in sink.events() if e["type"] == 3 and e["data"]["source"] == 0
                 and "added after the start" in str(e["data"])]
    assert mutations, "no incremental mutation event"
    status = session.status()
    assert status.recording_error is None, status
    await session.stop()


async def test_a_page_whose_load_never_comes_is_detected_restarted_and_recorded(
        browser_host: BrowserHost, fault_site: FaultSite) -> None:
    # rrweb starts at `load`, which an image from a server that never answers holds off.
    sink = ListSink()
    settings = SETTINGS.model_copy(update={"navigation_timeout_s": 3.0})
    session = BrowserSession("rec", settings, sink, host=browser_host)
    status = await session.start(SessionSpec(url=fault_site.page("/no-load"), steps=[
        {"action": "wait_for", "selector": "#text"}]))
    assert status.navigation_error and "did not load" in status.navigation_error
    await until(lambda: sink.snapshots() >= 1, "a snapshot after the recorder's restart")
    assert "loading forever" in sink.text()
    await until(lambda: session.status().recording_error is None, "the problem cleared")
    problems = [w.message for w in session.status().warnings if w.kind == "recording"]
    url = fault_site.page("/no-load")
    assert problems[0].startswith(
        f"no rrweb snapshot 1 s after loading {url}: rrweb did not take one"), problems
    assert problems[-1].endswith("is recorded again")
    await session.stop()


async def test_a_slow_snapshot_is_reported_until_it_arrives(browser_host: BrowserHost,
                                                            fault_site: FaultSite) -> None:
    # 300,000 nodes: rrweb's first snapshot takes several seconds, during which the page
    # answers nothing. That is reported (and not retried: it would queue another).
    sink = ListSink()
    session = BrowserSession("rec", SETTINGS, sink, host=browser_host)
    await session.start(SessionSpec(url=fault_site.page("/huge?nodes=300000")))
    await until(lambda: session.status().recording_error is not None, "the slow page reported",
                timeout_s=60)
    assert "its main thread is busy" in session.status().recording_error
    await until(lambda: session.status().recording_error is None and sink.snapshots() >= 1,
                "the snapshot arrived and the problem cleared", timeout_s=60)
    kinds = [w.message for w in session.status().warnings if w.kind == "recording"]
    assert len(kinds) == 2 and kinds[1].endswith("is recorded again"), kinds
    await session.stop()


async def test_huge_events_come_whole_in_pieces(browser_host: BrowserHost,
                                                fault_site: FaultSite) -> None:
    # Over a Mi characters a message comes in pieces; none may lose a character, not
    # even where a piece ends inside a surrogate pair.
    # Two events of 2.4 MB within a second are over the byte budget (1 MB/s), which would
    # pause the recording; this test is about the pieces.
    session, sink = await run(browser_host, fault_site.page("/big-events"), [
        {"action": "wait_for", "selector": "text=big events sent"}],
        SETTINGS.model_copy(update={"max_event_bytes_per_s": 0}))
    await until(lambda: len([e for e in sink.events() if e["type"] == 5]) == 2,
                "both big events arrived")
    texts = [e["data"]["payload"]["text"] for e in sink.events() if e["type"] == 5]
    wave = "\N{WATER WAVE}" * 600000
    assert texts == [wave + "end", "a" + wave + "end"]
    assert not session.status().warnings, "1.2 Mi characters are no large batch"
    await session.stop()


async def test_a_huge_snapshot_comes_whole_and_is_reported(browser_host: BrowserHost,
                                                           fault_site: FaultSite) -> None:
    sink = ListSink()
    session = BrowserSession("rec", SETTINGS, sink, host=browser_host)
    await session.start(SessionSpec(url=fault_site.page("/huge?nodes=60000")))
    await until(lambda: sink.snapshots() >= 1, "the snapshot arrived", timeout_s=60)
    text = sink.text()
    assert "\"row 59999\"" in text and "end of the huge page" in text
    size = max(len(b.text) for b in sink.batches)
    assert size > 4 * 2**20, f"the test page's snapshot is only {size} characters"
    await until(lambda: any(w.kind == "large_batch" for w in session.status().warnings),
                "the large batch reported")
    warning, = [w for w in session.status().warnings if w.kind == "large_batch"]
    assert f"{size / 1e6:.1f} MB snapshot" in warning.message
    await session.stop()
