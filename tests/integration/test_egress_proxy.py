"""The session's egress proxy under a real Chromium (no Ray): what the guard's hooks do
not see (a worker's WebSockets, redirects in a cross-site frame) and what Chromium would
resolve its own way (DNS rebinding) is refused, and ordinary pages load through it.
Names resolve by tests/integration/network_site.py's rules, on loopback only."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterator

import pytest

from pipeline.browser_host import BrowserHost
from pipeline.models import SessionSpec, SessionState, StepState, WarningKind
from pipeline.network_policy import AddressPolicy, IPAddress, MappedResolver
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
from tests.integration.test_network_policy import BLOCKING, blocked, run

pytestmark = pytest.mark.integration

# Chromium's own resolver sends rebind.test inside; the policy's says otherwise. Behind
# the proxy Chromium resolves nothing, so its answer must never matter.
CHROMIUM_RULES = f"MAP rebind.test {INSIDE_IP}, {RULES}"
LOOPBACK = f"resolves to {INSIDE_IP}, a loopback address"


class Rebinding:
    """The policy's resolver: the rules, except that rebind.test answers `first` to the
    first question and `then` to every later one, as a name an attacker controls may.
    Records every question."""

    def __init__(self, first: str, then: str) -> None:
        self._rules = MappedResolver(RULES)
        self._answers = (first, then)
        self.asked: list[str] = []

    async def resolve(self, host: str) -> list[IPAddress]:
        self.asked.append(host)
        if host == "rebind.test":
            return [ipaddress.ip_address(self._answers[self.asked.count(host) > 1])]
        return await self._rules.resolve(host)


@pytest.fixture(scope="module")
def site() -> Iterator[NetworkSite]:
    with serve_network_site() as served:
        yield served


@pytest.fixture(scope="module")
async def host() -> AsyncIterator[BrowserHost]:
    browser_host = BrowserHost(BLOCKING.model_copy(update={"host_resolver_rules":
                                                           CHROMIUM_RULES}))
    try:
        yield browser_host
    finally:
        await browser_host.close()


def blocked_urls(session: BrowserSession) -> set[str | None]:
    return {w.url for w in session.status().warnings if w.kind is WarningKind.BLOCKED_REQUEST}


async def test_a_workers_websocket_to_a_refused_host_is_refused(host: BrowserHost,
                                                                site: NetworkSite) -> None:
    session, sink, status = await run(host, SessionSpec(url=site.public("/worker-sockets"), steps=[
        {"action": "wait_for", "selector": "#inside:not(:text('pending'))"},
        {"action": "wait_for", "selector": "#public:not(:text('pending'))"}]))
    try:
        assert [s.state for s in status.steps] == [StepState.DONE] * 2, status
        await until(lambda: f"message: hello from {PUBLIC_IP}" in sink.text(),
                    "the worker's allowed socket got its message")
        assert "closed 1006" in sink.text()  # the tunnel was refused before any handshake
        assert "/ws" not in site.inside_hits()
        await until(lambda: f"https://inside.test:{site.port}/" in blocked_urls(session),
                    "the proxy reported the refused tunnel")
        warning = next(w for w in session.status().warnings
                       if w.url == f"https://inside.test:{site.port}/")
        assert LOOPBACK in warning.message
    finally:
        await session.stop()


async def test_redirects_inside_a_cross_site_frame_are_refused(host: BrowserHost,
                                                               site: NetworkSite) -> None:
    session, sink, status = await run(host, SessionSpec(url=site.public("/framed"), steps=[
        {"action": "wait_for", "selector": "#marker"}]))
    try:
        assert status.navigation_error is None and status.steps[0].state is StepState.DONE
        await until(lambda: {site.inside("/frame-redirect.png"), site.inside("/frame-fetch")}
                    <= blocked_urls(session), "both redirects in the frame were refused")
        assert (PUBLIC_IP, "/to-inside") in site.hits, "the frame's requests were not made"
        assert not {"/frame-redirect.png", "/frame-fetch"} & set(site.inside_hits())
        assert "framed" in sink.text()
    finally:
        await session.stop()


async def test_where_chromium_would_resolve_a_name_does_not_matter(host: BrowserHost,
                                                                   site: NetworkSite) -> None:
    """The policy's resolver has rebind.test public, Chromium's inside: the proxy connects
    where the policy checked."""
    resolver = Rebinding(PUBLIC_IP, PUBLIC_IP)
    url = f"http://rebind.test:{site.port}/plain"
    sink = ListSink()
    session = BrowserSession("net", BLOCKING, sink, host=host,
                             policy=AddressPolicy([PUBLIC_IP], resolver))
    try:
        await session.start(SessionSpec(url=url))
        await until(lambda: "plain" in sink.text(), "the page was recorded")
        status = session.status()
        assert status.navigation_error is None and not blocked(status), status
        assert (PUBLIC_IP, "/plain") in site.hits and site.inside_hits() == []
    finally:
        await session.stop()


async def test_a_name_that_rebinds_after_the_check_is_refused(host: BrowserHost,
                                                              site: NetworkSite) -> None:
    """The guard's check gets the public answer, the proxy's own the inside one: the
    proxy refuses, and nothing reaches the inside address."""
    resolver = Rebinding(PUBLIC_IP, INSIDE_IP)
    url = f"http://rebind.test:{site.port}/plain"
    sink = ListSink()
    session = BrowserSession("net", BLOCKING, sink, host=host,
                             policy=AddressPolicy([PUBLIC_IP], resolver))
    try:
        await session.start(SessionSpec(url=url))
        await until(lambda: url in blocked_urls(session), "the proxy refused the page")
        warning = next(w for w in session.status().warnings if w.url == url)
        assert LOOPBACK in warning.message, warning
        assert resolver.asked.count("rebind.test") >= 2, resolver.asked
        assert site.inside_hits() == []
    finally:
        await session.stop()


async def test_the_demo_site_loads_and_records_through_the_proxy(host: BrowserHost) -> None:
    """The policy's resolver hears of the demo site's hosts only from the proxy (the
    guard lets an allowed origin through unresolved)."""
    resolver = Rebinding(PUBLIC_IP, PUBLIC_IP)
    sink = ListSink()
    session = BrowserSession("demo", BLOCKING, sink, host=host,
                             policy=AddressPolicy([PUBLIC_IP], resolver))
    try:
        await session.start(SessionSpec(demo=True))
        await until(lambda: session.status().state is not SessionState.RUNNING,
                    "the demo workflow ended")
        status = session.status()
        assert status.state is SessionState.IDLE, status
        assert all(s.state is StepState.DONE for s in status.steps), status.steps
        assert status.blocked_requests == 0 and not blocked(status), status.warnings
        assert {"127.0.0.1", "localhost"} <= set(resolver.asked), resolver.asked
        assert sink.text()
    finally:
        await session.stop()
