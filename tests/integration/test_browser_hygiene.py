"""After a stop, a crash, or a kill of the process that owns a browser, no Chromium process
and no profile or artifact directory of it remains (real Chromium, no Ray)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from pipeline.browser_dirs import browsers_root, sweep
from pipeline.browser_host import BrowserHost
from pipeline.config import Settings
from pipeline.models import SessionSpec, SessionState
from pipeline.session import BrowserSession
from tests.integration.browser_procs import (
    chromium_in_root,
    chromium_under,
    playwright_dirs_in_root,
    root_entries,
    until,
)
from tests.integration.fault_site import FaultSite
from tests.integration.sinks import ListSink


def owned_here(entries: set[str]) -> set[str]:
    """The root's directories owned by this (test) process."""
    return {e for e in entries if e.startswith(f"{os.getpid()}-")}


def ours(owner: int | None = None) -> set[int]:
    return {p.pid for p in chromium_in_root(owner or os.getpid())}


async def test_nothing_is_left_after_sessions_stop_and_their_host_closes(
        fault_site: FaultSite) -> None:
    chromium_before, dirs_before = ours(), owned_here(root_entries())
    host = BrowserHost(Settings())
    shared = BrowserSession("a", Settings(), ListSink(), host=host)
    own = BrowserSession("b", Settings(), ListSink())  # a Chromium of its own
    for session in (shared, own):
        status = await session.start(SessionSpec(url=fault_site.page("/download-link"), steps=[
            {"action": "click", "selector": "#get"}, {"action": "wait", "ms": 300}]))
        assert status.state is SessionState.RUNNING, status
    await until(lambda: all(s.status().state is SessionState.IDLE for s in (shared, own)),
                "both idle")
    # Profiles (and the downloads' artifacts) are under the root, not in /tmp itself.
    names = [p.name for p in playwright_dirs_in_root()
             if p.parent.name in owned_here(root_entries())]
    assert sum(n.startswith("playwright_chromiumdev_profile-") for n in names) == 2, names
    assert sum(n.startswith("playwright-artifacts-") for n in names) >= 2, names
    assert ours() - chromium_before
    for session in (shared, own):
        assert (await session.stop()).state is SessionState.STOPPED
    await host.close()
    await until(lambda: not ours() - chromium_before, "every Chromium gone")
    assert owned_here(root_entries()) == dirs_before


async def test_nothing_is_left_after_the_shared_browser_crashed(fault_site: FaultSite) -> None:
    chromium_before, dirs_before = ours(), owned_here(root_entries())
    host = BrowserHost(Settings())
    sink = ListSink()
    session = BrowserSession("c", Settings(checkout_every_ms=600_000), sink, host=host)
    await session.start(SessionSpec(url=fault_site.page("/plain?name=crash")))
    await until(lambda: sink.snapshots() == 1, "the first snapshot")
    first = host.pid()
    assert first is not None
    crashed = chromium_under(first)
    os.kill(first, signal.SIGKILL)
    await until(lambda: sink.snapshots() == 2, "the page reopened in a new Chromium")
    assert not [p for p in crashed if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert len(owned_here(root_entries()) - dirs_before) == 2, "the new server's and the driver's"
    await session.stop()
    await host.close()
    await until(lambda: not ours() - chromium_before, "every Chromium gone")
    assert owned_here(root_entries()) == dirs_before


_HOLDER = """
import asyncio, sys
from pipeline.browser_host import BrowserHost
from pipeline.config import Settings
from pipeline.models import SessionSpec
from pipeline.session import BrowserSession

class Sink:
    async def push(self, batches): return 0
    async def close(self): pass

async def main():
    if sys.argv[1] == "host":
        from playwright.async_api import async_playwright
        from pipeline.browser import resolve_executable
        async with async_playwright() as playwright:
            executable = resolve_executable(playwright, Settings().chromium)
        host = BrowserHost(Settings())
        await host.endpoint(executable)
        print(host.pid(), flush=True)
    else:  # a session with a Chromium of its own
        session = BrowserSession("held", Settings(), Sink())
        await session.start(SessionSpec(url=sys.argv[2]))
        print(0, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


@pytest.mark.parametrize("holder", ["host", "session"])
async def test_nothing_is_left_after_the_owner_of_a_browser_is_killed(
        fault_site: FaultSite, holder: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, holder, fault_site.page("/plain"),
        stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line.strip(), "the holder did not start its browser"
        owned = {e for e in root_entries() if e.startswith(f"{process.pid}-")}
        assert owned, "its browser runs in a directory of the root"
        assert ours(process.pid)
        os.kill(process.pid, signal.SIGKILL)  # as Ray kills an actor's worker
        await asyncio.wait_for(process.wait(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    # Chromium goes with its server or driver (pdeathsig, a closed pipe)...
    await until(lambda: not ours(process.pid), "the killed owner's Chromium gone", 15)
    # ...and whoever starts next (a host Ray restarts, the next session) sweeps its directory.
    swept = await asyncio.to_thread(sweep)
    assert {p.name for p in swept} >= owned
    assert not {e for e in root_entries() if e.startswith(f"{process.pid}-")}
    assert browsers_root().exists()
