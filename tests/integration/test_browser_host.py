"""Sessions sharing one Chromium through a BrowserHost (real Chromium, no Ray)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable

import httpx
import orjson
import psutil
import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import async_playwright

from pipeline.browser import BROWSER_SECRET_HEADER, connect_shared, resolve_executable
from pipeline.browser_host import BrowserHost
from pipeline.config import Settings
from pipeline.models import SessionSpec, SessionState
from pipeline.session import BrowserSession
from pipeline.stream import SessionStream
from tests.integration.test_session import StreamerSink, recorded_events


def host_chromium(host: BrowserHost) -> dict[int, psutil.Process]:
    """Every live Chromium process of the host's browser server (not, say, those of a
    Ray stack that other tests started in this process)."""
    browser = host.pid()
    if browser is None:
        return {}
    try:
        server = psutil.Process(browser).parent()
        return {p.pid: p for p in server.children(recursive=True)
                if "chrom" in p.name().lower() and p.status() != psutil.STATUS_ZOMBIE}
    except psutil.Error:
        return {}


async def until(condition: Callable[[], bool], what: str, tries: int = 300) -> None:
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
async def host() -> AsyncIterator[BrowserHost]:
    host = BrowserHost(Settings())
    try:
        yield host
    finally:
        running = list(host_chromium(host).values())
        await host.close()
    _, alive = psutil.wait_procs(running, timeout=10)
    assert not alive, "closing the host must leave no Chromium"


def two_sessions(host: BrowserHost) -> list[tuple[BrowserSession, SessionStream]]:
    # No periodic checkouts: a second FullSnapshot comes only from reopening the page.
    settings = Settings(checkout_every_ms=600_000)
    out = []
    for name in ("a", "b"):
        streamer = SessionStream(name, settings)
        out.append((BrowserSession(name, settings, StreamerSink(streamer), host=host),
                    streamer))
    return out


async def test_sessions_share_one_browser_in_separate_contexts(host, demo_site) -> None:
    pairs = two_sessions(host)
    for name, (session, _) in zip("ab", pairs, strict=True):
        status = await session.start(SessionSpec(url=f"{demo_site.url}/form.html", steps=[
            {"action": "fill", "selector": "#name", "value": f"typed in {name}"},
            {"action": "press", "selector": "#name", "key": "Tab"},
        ]))
        assert status.state is SessionState.RUNNING, status.error
    await until(lambda: all(s.status().state is SessionState.IDLE for s, _ in pairs),
                "both workflows finished")
    assert host.launches() == 1
    browsers = [pid for pid, proc in host_chromium(host).items()
                if not any(a.startswith("--type=") for a in proc.cmdline())]
    assert browsers == [host.pid()], "one browser process for both sessions"

    for session, _ in pairs:
        assert (await session.stop()).state is SessionState.STOPPED
    assert host.pid() is not None, "a session's stop leaves the shared Chromium running"
    texts = [orjson.dumps(await recorded_events(streamer)).decode() for _, streamer in pairs]
    assert "typed in a" in texts[0] and "typed in a" not in texts[1]
    assert "typed in b" in texts[1] and "typed in b" not in texts[0]


async def test_every_session_recovers_when_the_shared_browser_dies(host, demo_site) -> None:
    pairs = two_sessions(host)
    for session, _ in pairs:
        status = await session.start(SessionSpec(url=f"{demo_site.url}/list.html"))
        assert status.state is SessionState.RUNNING, status.error
    await until(lambda: all(s.status().state is SessionState.IDLE for s, _ in pairs),
                "both sessions idle")
    crashed = host.pid()
    assert crashed is not None
    os.kill(crashed, signal.SIGKILL)

    await until(lambda: all(s.status().browser_restarts == 1 for s, _ in pairs),
                "both sessions noticed the crash")
    await until(lambda: host.pid() not in (None, crashed), "Chromium relaunched")
    for session, streamer in pairs:
        # The page is open again where it was, and rrweb records it from a new snapshot.
        for _ in range(300):
            snapshots = [e["type"] for e in await recorded_events(streamer)].count(2)
            if snapshots >= 2:
                break
            await asyncio.sleep(0.1)
        assert snapshots >= 2, "no FullSnapshot after the crash"
        assert session.status().state is SessionState.IDLE
        assert session.status().url.endswith("/list.html")
    assert host.launches() == 2, "one relaunch for every session on the browser"
    for session, _ in pairs:
        await session.stop()


async def test_a_warmed_up_session_uses_the_shared_browser(host, demo_site) -> None:
    (session, _), = two_sessions(host)[:1]
    await session.warm_up()
    assert host.launches() == 1 and session.status().state is SessionState.PENDING
    assert (await session.start(SessionSpec(url=f"{demo_site.url}/index.html"))).state \
        is SessionState.RUNNING
    assert host.launches() == 1, "start must reuse the running browser"
    await session.stop()


async def test_the_server_is_reachable_only_through_its_private_socket(host: BrowserHost) -> None:
    """No TCP port (on 127.0.0.1 any local user could ask Playwright's server for its path
    at GET /json): a Unix socket in a 0700 directory, which sessions connect to directly."""
    endpoint = await host.endpoint(await _executable())
    assert endpoint.url.startswith("ws+unix://") and endpoint.url.endswith(":/playwright")
    socket_path = endpoint.url.removeprefix("ws+unix://").rsplit(":", 1)[0]
    assert os.stat(os.path.dirname(socket_path)).st_mode & 0o777 == 0o700
    browser = psutil.Process(host.pid())
    server = browser.parent()
    for process in (server, browser):
        listening = [c for c in process.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        assert not listening, f"{process.name()} listens on TCP: {listening}"
    async with async_playwright() as playwright:
        connected = await connect_shared(playwright, endpoint)
        try:
            page = await connected.new_page()
            await page.set_content("<p>through the socket</p>")
            assert await page.inner_text("p") == "through the socket"
        finally:
            await connected.close()


async def test_the_server_admits_only_the_holders_of_its_secret(host: BrowserHost) -> None:
    """A process of Ray's own user that reaches the socket still gets nowhere without the
    secret the host hands its sessions: no Playwright connection, no GET /json."""
    endpoint = await host.endpoint(await _executable())
    socket_path = endpoint.url.removeprefix("ws+unix://").rsplit(":", 1)[0]
    async with async_playwright() as playwright:
        for headers in ({}, {BROWSER_SECRET_HEADER: "x" * 43},
                        {BROWSER_SECRET_HEADER: endpoint.secret[:-1]}):
            with pytest.raises(PlaywrightError, match="403"):
                await playwright.chromium.connect(endpoint.url, headers=headers, timeout=5000)
    for headers in ({}, {BROWSER_SECRET_HEADER: endpoint.secret + "x"}):
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=socket_path)) as http:
            answer = await http.get("http://localhost/json", headers=headers)
        assert answer.status_code == 403 and "wsEndpointPath" not in answer.text
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=socket_path)) as http:
        answer = await http.get("http://localhost/json", headers=endpoint.headers())
    assert answer.status_code == 200, "the secret's holder is let in"
    assert "secret" not in repr(endpoint) and endpoint.secret not in repr(endpoint)


async def _executable() -> str | None:
    async with async_playwright() as playwright:
        return resolve_executable(playwright, Settings().chromium)
