"""The network policy inside a real Chromium (no Ray): start URLs, goto steps, redirects,
subresources and WebSockets to an inside address are refused and reported, the session
runs on. Names resolve by tests/integration/network_site.py's rules, on loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from pipeline.browser_host import BrowserHost
from pipeline.config import Settings
from pipeline.models import SessionSpec, SessionState, SessionStatus, StepState, WarningKind
from pipeline.session import BrowserSession
from tests.integration.browser_procs import until
from tests.integration.network_site import (
    INSIDE_IP,
    PUBLIC_IP,
    RULES,
    NetworkSite,
    serve_network_site,
)
from tests.integration.sinks import ListSink

pytestmark = pytest.mark.integration

# public.test (127.0.0.9) stands in for a public host: the tests allow its address.
BLOCKING = Settings(block_private_networks=True, allowed_hosts=[PUBLIC_IP],
                    host_resolver_rules=RULES, navigation_timeout_s=10)
LOOPBACK_WORDS = f"resolves to {INSIDE_IP}, a loopback address; private networks are blocked"


@pytest.fixture(scope="module")
def site() -> Iterator[NetworkSite]:
    with serve_network_site() as served:
        yield served


@pytest.fixture(scope="module")
async def host() -> AsyncIterator[BrowserHost]:
    """A shared Chromium launched with the test's resolver rules."""
    browser_host = BrowserHost(BLOCKING)
    try:
        yield browser_host
    finally:
        await browser_host.close()


async def run(host: BrowserHost, spec: SessionSpec,
              settings: Settings = BLOCKING) -> tuple[BrowserSession, ListSink, SessionStatus]:
    sink = ListSink()
    session = BrowserSession("net", settings, sink, host=host)
    await session.start(spec)
    await until(lambda: session.status().state is not SessionState.RUNNING, "workflow ended")
    return session, sink, session.status()


def blocked(status: SessionStatus) -> list[str]:
    return [w.message for w in status.warnings if w.kind is WarningKind.BLOCKED_REQUEST]


async def test_a_refused_start_url_is_a_navigation_error(host: BrowserHost,
                                                          site: NetworkSite) -> None:
    session, _, status = await run(host, SessionSpec(url=site.inside("/secret")))
    try:
        assert status.state is SessionState.IDLE, status
        assert status.navigation_error == (f"could not open {site.inside('/secret')}: it "
                                           f"{LOOPBACK_WORDS} (RRSTREAM_BLOCK_PRIVATE_NETWORKS)")
        assert blocked(status) and status.blocked_requests == 1, status
        assert site.inside_hits() == []
    finally:
        await session.stop()


async def test_a_goto_step_to_a_refused_host_fails_and_the_session_runs_on(
        host: BrowserHost, site: NetworkSite) -> None:
    session, sink, status = await run(host, SessionSpec(url=site.public("/plain"), steps=[
        {"action": "goto", "url": site.inside("/secret")}]))
    try:
        assert status.state is SessionState.IDLE, status
        assert status.steps[0].state is StepState.FAILED
        assert LOOPBACK_WORDS in status.steps[0].error, status.steps[0]
        assert status.error.startswith("step 0 (goto) failed: could not open "
                                       f"{site.inside('/secret')}: it resolves to")
        assert site.inside_hits() == []
        assert "public page" not in sink.text()
    finally:
        await session.stop()


async def test_a_redirect_to_a_refused_host_is_blocked(host: BrowserHost,
                                                       site: NetworkSite) -> None:
    """Playwright routes no redirect hop; the guard's CDP Fetch session does."""
    start = site.public("/to-inside")
    session, _, status = await run(host, SessionSpec(url=start))
    try:
        assert status.navigation_error == (
            f"could not open {start}: it redirected to {site.inside('/secret')}, which "
            f"{LOOPBACK_WORDS} (RRSTREAM_BLOCK_PRIVATE_NETWORKS)"), status
        assert site.inside_hits() == [], "the redirect was followed"
        assert (PUBLIC_IP, "/to-inside") in site.hits
    finally:
        await session.stop()


async def test_subresources_to_a_refused_host_are_blocked_and_the_page_loads(
        host: BrowserHost, site: NetworkSite) -> None:
    session, sink, status = await run(host, SessionSpec(url=site.public("/page"), steps=[
        {"action": "wait_for", "selector": "#fetch:not(:text('pending'))"}]))
    try:
        assert status.navigation_error is None and status.steps[0].state is StepState.DONE
        await until(lambda: "refused: TypeError" in sink.text(), "the fetch was refused")
        assert "public page" in sink.text()
        assert site.inside_hits() == [], "a subresource reached the inside address"
        urls = {w.url for w in status.warnings if w.kind is WarningKind.BLOCKED_REQUEST}
        # img, iframe and fetch, the image behind a redirect, and a cross-site frame's
        # navigation behind one.
        assert {site.inside(p) for p in ("/img.png", "/frame", "/data", "/redirected.png",
                                         "/cross-site-frame")} <= urls, status.warnings
        assert status.blocked_requests >= 4
    finally:
        await session.stop()


async def test_a_websocket_to_a_refused_host_is_closed(host: BrowserHost,
                                                       site: NetworkSite) -> None:
    session, sink, _ = await run(host, SessionSpec(url=site.public("/sockets"), steps=[
        {"action": "wait_for", "selector": "#inside:not(:text('pending'))"},
        {"action": "wait_for", "selector": "#public:not(:text('pending'))"}]))
    try:
        status = session.status()
        assert [s.state for s in status.steps] == [StepState.DONE] * 2, status
        await until(lambda: f"message: hello from {PUBLIC_IP}" in sink.text(),
                    "the allowed socket got its message")
        await until(lambda: "closed 1008" in sink.text(), "the refused socket was closed")
        assert "/ws" not in site.inside_hits()
        assert any(w.url == f"ws://inside.test:{site.port}/ws" for w in status.warnings
                   if w.kind is WarningKind.BLOCKED_REQUEST), status.warnings
    finally:
        await session.stop()


@contextlib.contextmanager
def udp_listener(address: str) -> Iterator[socket.socket]:
    """A UDP socket on `address` that counts what reaches it (a STUN server that never
    answers)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((address, 0))
        sock.setblocking(False)
        yield sock
    finally:
        sock.close()


def datagrams(sock: socket.socket) -> int:
    count = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recvfrom(65536)
            count += 1
    return count


async def webrtc_probe(host: BrowserHost, site: NetworkSite,
                       settings: Settings) -> tuple[str, int]:
    """What a page's peer connection gathered, and how many datagrams reached a STUN
    server on the inside address."""
    with udp_listener(INSIDE_IP) as stun:
        port = stun.getsockname()[1]
        session, sink, status = await run(host, SessionSpec(
            url=site.public(f"/webrtc?port={port}"),
            steps=[{"action": "wait_for", "selector": "#candidates:not(:text('pending'))"}]),
            settings)
        try:
            assert [s.state for s in status.steps] == [StepState.DONE], status
            await until(lambda: "gathered:" in sink.text(), "the page showed its candidates")
            text = sink.text()
            shown = text[text.index("gathered:"):].split('"')[0]
            await asyncio.sleep(0.5)  # a datagram in flight
            return shown, datagrams(stun)
        finally:
            await session.stop()


async def test_webrtc_sends_no_udp_with_the_block_on(host: BrowserHost,
                                                     site: NetworkSite) -> None:
    """WebRTC's UDP passes no HTTP proxy, so the browser is told to send none at all: no
    candidate is gathered and the STUN server on the inside address hears nothing."""
    shown, heard = await webrtc_probe(host, site, BLOCKING)
    assert (shown.strip(), heard) == ("gathered:", 0)


async def test_webrtc_reaches_a_stun_server_without_the_block(site: NetworkSite) -> None:
    """The control of the test above: the same page on a browser without the block does
    reach the STUN server over UDP."""
    open_settings = BLOCKING.model_copy(update={"block_private_networks": False})
    open_host = BrowserHost(open_settings)
    try:
        shown, heard = await webrtc_probe(open_host, site, open_settings)
    finally:
        await open_host.close()
    assert "host" in shown and heard > 0, (shown, heard)


@contextlib.contextmanager
def tcp_listener(address: str) -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on `address` that keeps the first bytes of every connection."""
    heard: list[bytes] = []
    server = socket.create_server((address, 0))
    server.settimeout(0.2)
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2.0)
                try:
                    heard.append(conn.recv(64))
                except OSError:
                    heard.append(b"")

    thread = threading.Thread(target=accept, name="turn-listener", daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], heard
    finally:
        done.set()
        thread.join(2.0)
        server.close()


async def turn_probe(host: BrowserHost, site: NetworkSite, turn_host: str,
                     listen_on: str) -> tuple[list[bytes], SessionStatus]:
    """What a TURN server over TCP on `listen_on` heard from a page relaying through it
    (named `turn_host`), and the session's status after."""
    with tcp_listener(listen_on) as (port, heard):
        session, _, _ = await run(host, SessionSpec(
            url=site.public(f"/webrtc-turn?host={turn_host}&port={port}"),
            steps=[{"action": "wait_for", "selector": "#candidates:not(:text('pending'))"}]))
        try:
            await asyncio.sleep(0.5)  # a connection in flight
            return list(heard), session.status()
        finally:
            await session.stop()


async def test_webrtc_over_turn_tcp_goes_through_the_egress_proxy_and_its_check(
        host: BrowserHost, site: NetworkSite) -> None:
    """TURN over TCP is carried by the session's egress proxy: to an allowed host it
    reaches the TURN server (a STUN message: type 0x0003 Allocate); to an inside one the
    proxy refuses it, reports it, and the server hears nothing."""
    heard, status = await turn_probe(host, site, "public.test", PUBLIC_IP)
    assert heard and all(first[:2] == b"\x00\x03" for first in heard), heard
    assert status.blocked_requests == 0, status
    heard, status = await turn_probe(host, site, "inside.test", INSIDE_IP)
    assert heard == []
    assert status.blocked_requests >= 1, status
    blocked = [w.message for w in status.warnings if w.kind is WarningKind.BLOCKED_REQUEST]
    assert any(LOOPBACK_WORDS in m for m in blocked), blocked


async def test_allowed_hosts_let_an_inside_host_through(host: BrowserHost,
                                                        site: NetworkSite) -> None:
    settings = BLOCKING.model_copy(update={"allowed_hosts": [PUBLIC_IP, "inside.test"]})
    session, sink, status = await run(host, SessionSpec(url=site.inside("/secret")), settings)
    try:
        assert status.navigation_error is None and status.blocked_requests == 0, status
        assert "/secret" in site.inside_hits()
    finally:
        await session.stop()


async def test_the_demo_site_works_with_the_block_on(host: BrowserHost) -> None:
    """The demo site is on loopback (two origins, one of them `localhost`): the session's
    own is always allowed, and its workflow runs through."""
    session, sink, status = await run(host, SessionSpec(demo=True))
    try:
        assert status.state is SessionState.IDLE, status
        assert all(s.state is StepState.DONE for s in status.steps), status.steps
        assert status.blocked_requests == 0 and not blocked(status), status.warnings
    finally:
        await session.stop()
