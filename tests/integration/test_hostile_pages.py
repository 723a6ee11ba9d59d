"""Hostile pages beside a canary: each is bounded and reported in its session's status,
the canary session keeps streaming to its viewer, and the hostile session stops within
5 s (the real stack: Ray, the gateway, the node's shared Chromium, serve/client).

The canary's p99 frame latency is logged per page (bench/hostile.py measures it against
a baseline); on two shared cores it is asserted only loosely.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from bench.hostile_site import HostileSite, serve_hostile_site
from pipeline.config import Settings
from serve.client import Client, Frame
from tests.conftest import wait_for_state

pytestmark = pytest.mark.integration
_log = logging.getLogger(__name__)
BYTE_BUDGET = Settings().max_event_bytes_per_s  # what the test stack runs with


@pytest.fixture(scope="module")
def hostile_site() -> Iterator[HostileSite]:
    with serve_hostile_site() as site:
        yield site


@dataclass
class Canary:
    session_id: str
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (arrival s, ms)

    def on_frame(self, frame: Frame) -> None:
        if frame.arrival_ms is not None:
            self.latencies.append((frame.arrival_ms / 1000.0,
                                   frame.arrival_ms - frame.header.last_ts))

    def since(self, began: float) -> list[float]:
        return sorted(ms for at, ms in self.latencies if at >= began)


def p99(values: list[float]) -> float:
    return values[min(len(values) - 1, int(len(values) * 0.99))]


@pytest.fixture(scope="module")
async def canary(stack: Any, hostile_site: HostileSite) -> AsyncIterator[Canary]:
    async with Client(stack.base_url, timeout=60) as client:
        info = await client.create_session(hostile_site.page("/quiet"), name="canary")
        canary = Canary(info["id"])
        viewer = client.viewer(info["id"], on_frame=canary.on_frame, keep_frames=False,
                               reconnect=True)
        viewer.start()
        try:
            await viewer.wait_until(lambda: len(canary.latencies) > 20, 60)
            yield canary
        finally:
            await viewer.stop()
            await client.stop_session(info["id"])


def reported(field_name: str, kind: str) -> Callable[[dict[str, Any]], bool]:
    def check(info: dict[str, Any]) -> bool:
        kinds = {w["kind"] for w in info["warnings"]}
        return bool(info.get(field_name)) and kind in kinds
    return check


CASES: dict[str, tuple[Callable[[dict[str, Any]], bool], str]] = {
    "/alert-loop": (reported("dialogs_dismissed", "dialog"), "dismissed at once"),
    "/open-storm": (reported("popups_closed", "popup"), "refused"),
    "/infinite-loop": (reported("unresponsive_since", "unresponsive"),
                       "main thread stopped answering"),
    # Its one snapshot of ~30 MB comes in pieces, so as not to hold up the canary.
    "/huge-dom?nodes=200000": (lambda info: info["events"] > 0 and "large_batch" in
                               {w["kind"] for w in info["warnings"]},
                               "snapshot at once (a very large DOM); it came in pieces"),
    # Each event is huge: the byte budget pauses them (coarser sampling thins no mutation).
    # (The newest words of the pauses' one warning: the first pause's, or "still so".)
    "/mutation-flood": (reported("stretches_dropped", "event_rate"),
                        "(RRSTREAM_MAX_EVENT_BYTES_PER_S)"),
    "/rewrite-every-frame": (reported("stretches_dropped", "event_rate"),
                             "(RRSTREAM_MAX_EVENT_BYTES_PER_S)"),
}


@pytest.mark.parametrize("path", list(CASES))
async def test_a_hostile_page_is_bounded_reported_and_stopped(
        path: str, api: Any, canary: Canary, hostile_site: HostileSite) -> None:
    check, words = CASES[path]
    baseline_from = time.time()
    await asyncio.sleep(3)
    baseline = canary.since(baseline_from)
    response = await api.post("/sessions", json={"url": hostile_site.page(path),
                                                 "name": f"hostile {path}"})
    assert response.status_code == 201, response.text
    sid = response.json()["id"]
    began = time.time()
    try:
        # Left `starting` within the navigation's time, whatever the page does.
        await wait_for_state(api, sid, {"running", "idle"}, timeout_s=30)
        info: dict[str, Any] = {}
        try:
            async with asyncio.timeout(40):
                while True:
                    info = (await api.get(f"/sessions/{sid}")).json()
                    if check(info):
                        break
                    await asyncio.sleep(0.5)
        except TimeoutError:
            # A page the byte budget is for may not reach it on a busy machine: its renderer,
            # busy every frame, runs niced, so rrweb records fewer frames a second. Bounded
            # all the same if what it made stayed under the budget (bytes_raw counts the
            # checkouts too, which the budget does not). The pause itself is tested with a
            # small budget in test_session_guard.py.
            rate = (info.get("bytes_raw") or 0) / (time.time() - began)
            if words.startswith("(RRSTREAM_MAX_EVENT_BYTES_PER_S)") and rate < BYTE_BUDGET:
                _log.warning("%s stayed under the byte budget here: %.1f MB/s", path,
                             rate / 1e6)
                words = ""
            else:
                pytest.fail(f"{path} was not reported within 40 s: state {info.get('state')}, "
                            f"{info.get('events')} events, {info.get('bytes_raw')} bytes, "
                            f"stretches_dropped {info.get('stretches_dropped')}, warnings "
                            f"{[(w['kind'], w['message']) for w in info.get('warnings', [])]}")
        if words:
            assert any(words in w["message"] for w in info["warnings"]), info["warnings"]
        await asyncio.sleep(3)  # the canary beside it for a while
        during = canary.since(began)
        _log.warning("canary beside %s: p99 %.0f ms over %d frames (before: p99 %.0f ms "
                     "over %d frames)", path, p99(during), len(during), p99(baseline),
                     len(baseline))
        # The canary page changes every 50 ms; it must keep streaming, if slower.
        assert len(during) >= 20, f"the canary got {len(during)} frames beside {path}"
        assert p99(during) < 5_000, f"the canary stalled beside {path}: p99 {p99(during):.0f} ms"
    finally:
        stopping = time.monotonic()
        stopped = await api.delete(f"/sessions/{sid}")
        took = time.monotonic() - stopping
    assert stopped.json()["state"] == "stopped", stopped.text
    assert took < 5.0, f"stopping the session on {path} took {took:.1f} s"
    assert (await api.get("/readyz")).status_code == 200
