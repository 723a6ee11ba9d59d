"""A session's egress proxy: every connection of its browser context goes through it, to
an address the network policy checked, so where Chromium connects is decided here, once.

The guard's hooks (pipeline/network_guard.py) check what Playwright and the page's CDP
session show them, and then Chromium resolves the name again by itself: a name that
answers a public address to the check and an inside one to Chromium (DNS rebinding)
got through, and so did what the hooks never see (a worker's WebSocket, a redirect in a
cross-site frame or a worker). Behind this proxy Chromium resolves nothing: the proxy
resolves each host once with the policy's resolver, checks every address, and connects
to a checked address, never to the name.

It speaks HTTP/1.1 on loopback, with h11 on both sides: CONNECT host:port (https, and
every WebSocket: Chromium tunnels ws:// too) becomes a byte tunnel; an absolute-form
request (plain http) is forwarded on an upstream connection of its own, which the next
request on the same client connection reuses if it goes to the same host and port, so a
keep-alive connection on which Chromium asks several hosts is served correctly. Only
holders of the session's random credential get in (407 otherwise): other processes on
the machine must not borrow a way around their own network rules. A refusal is a 403
with the reason in words, and reaches `on_refusal`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import h11

from pipeline.errors import InvalidTransition
from pipeline.network_policy import AddressPolicy, IPAddress, Refusal

_log = logging.getLogger(__name__)
_READ = 64 * 1024
_MAX_HEADERS = 64 * 1024  # request or response head; Chromium's own limit is 256 KiB
# Hop-by-hop headers (RFC 9110 7.6.1): they describe one connection, not the message.
_HOP = frozenset({b"connection", b"proxy-connection", b"keep-alive", b"proxy-authorization",
                  b"proxy-authenticate", b"te", b"trailer", b"upgrade"})


class ProxyState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    CLOSED = "closed"


class EgressProxy:
    """One per session, in the session's event loop: `start`, hand `playwright_proxy()`
    to `browser.new_context(proxy=...)`, `close` when the session ends."""

    def __init__(self, policy: AddressPolicy, on_refusal: Callable[[Refusal], None], *,
                 idle_timeout_s: float = 120.0, connect_timeout_s: float = 10.0) -> None:
        self.policy = policy
        self.refused = 0  # connections and requests refused, all told
        self._on_refusal = on_refusal
        self._idle_s, self._connect_s = idle_timeout_s, connect_timeout_s
        self.username = "rrstream"
        self.password = secrets.token_urlsafe(24)
        self._expected = f"{self.username}:{self.password}".encode()
        self._state = ProxyState.CREATED
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def state(self) -> ProxyState:
        return self._state

    @property
    def connections(self) -> int:
        """Client connections being served now."""
        return len(self._connections)

    async def start(self) -> None:
        if self._state is not ProxyState.CREATED:
            raise InvalidTransition("egress proxy", self._state.value, "start")
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0,
                                                  limit=_MAX_HEADERS)
        self.port = self._server.sockets[0].getsockname()[1]
        self._state = ProxyState.RUNNING

    def playwright_proxy(self) -> dict[str, str]:
        """The `proxy` of a Playwright context that sends everything here. Chromium never
        proxies loopback unless told: `<-loopback>` takes that exception away."""
        return {"server": f"http://127.0.0.1:{self.port}", "username": self.username,
                "password": self.password, "bypass": "<-loopback>"}

    async def close(self) -> None:
        """Stops listening and ends every connection; idempotent."""
        if self._state is ProxyState.CLOSED:
            return
        self._state = ProxyState.CLOSED
        if self._server is not None:
            self._server.close()
        # Aborted sockets end their connections' reads, and so the connections; a
        # cancelled stream handler is logged as an error by Python 3.11's asyncio.
        for writer in list(self._writers):
            writer.transport.abort()
        if self._connections:
            _, stuck = await asyncio.wait(self._connections, timeout=1.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        await asyncio.sleep(0)  # the transports close their sockets on the next turn
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> EgressProxy:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- a client connection ---------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._state is not ProxyState.RUNNING:
            writer.close()
            return
        self._connections.add(task)
        self._writers.add(writer)
        client = _Client(reader, writer, self._idle_s)
        upstream: _Upstream | None = None
        try:
            while True:
                request = await client.next_request()
                if request is None:
                    return
                if not self._authorized(request):
                    await client.refuse(407, "proxy credentials required\n",
                                        [(b"Proxy-Authenticate", b'Basic realm="rrstream"')])
                    continue
                if request.method == b"CONNECT":
                    if upstream is not None:
                        upstream.close()
                        upstream = None
                    await self._tunnel(client, request)
                    return
                upstream = await self._forward(client, request, upstream)
                if upstream is None and client.conn.our_state is h11.SWITCHED_PROTOCOL:
                    return
        except (ConnectionError, h11.ProtocolError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as exc:
            _log.debug("egress proxy connection ended: %r", exc)
        finally:
            if upstream is not None:
                upstream.close()
            writer.close()
            self._writers.discard(writer)
            self._connections.discard(task)

    def _authorized(self, request: h11.Request) -> bool:
        given = b""
        for name, value in request.headers:
            if name == b"proxy-authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"basic":
                    with contextlib.suppress(binascii.Error, ValueError):
                        given = base64.b64decode(token.strip(), validate=True)
        return hmac.compare_digest(given, self._expected)

    async def _tunnel(self, client: _Client, request: h11.Request) -> None:
        host, port = _authority(request.target.decode("ascii", "replace"))
        if host is None:
            await client.refuse(400, "CONNECT wants host:port\n", close=True)
            return
        url = f"https://{_netloc(host, port)}/"
        addresses = await self._admitted(client, url, tunnel=True)
        if addresses is None:
            return
        opened = await self._connect(client, url, addresses, port)
        if opened is None:
            return
        up_reader, up_writer = opened
        self._writers.add(up_writer)
        try:
            await client.send(h11.Response(status_code=200, headers=[],
                                           reason=b"Connection established"))
            early, _ = client.conn.trailing_data
            if early:
                up_writer.write(early)
            await _splice(client.reader, client.writer, up_reader, up_writer, self._idle_s)
        finally:
            up_writer.close()
            self._writers.discard(up_writer)

    async def _forward(self, client: _Client, request: h11.Request,
                       upstream: _Upstream | None) -> _Upstream | None:
        """Sends `request` on (an upstream connection to its host, reused when it is the
        one `upstream` has open) and its response back; returns the upstream connection
        if it may serve the next request."""
        url = request.target.decode("ascii", "replace")
        parts = urlsplit(url)
        if parts.scheme.lower() != "http" or not parts.hostname:
            await client.refuse(400, "this proxy forwards absolute http:// URLs and "
                                "CONNECT only\n", close=True)
            return _closed(upstream)
        try:
            port = parts.port or 80
        except ValueError:
            await client.refuse(400, f"{url} has no valid port\n", close=True)
            return _closed(upstream)
        key = (parts.hostname.lower(), port)
        if upstream is None or upstream.key != key or not upstream.reusable():
            _closed(upstream)
            upstream = None
            addresses = await self._admitted(client, url, tunnel=False)
            if addresses is None:
                return None
            opened = await self._connect(client, url, addresses, port)
            if opened is None:
                return None
            upstream = _Upstream(key, *opened)
            self._writers.add(upstream.writer)
        try:
            return await self._exchange(client, request, parts, upstream)
        finally:
            if upstream.closed:
                self._writers.discard(upstream.writer)

    async def _exchange(self, client: _Client, request: h11.Request, parts: Any,
                        upstream: _Upstream) -> _Upstream | None:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        upgrade = _header(request, b"upgrade") is not None
        headers = _end_to_end(request.headers, upgrade)
        if _header(request, b"host") is None:
            headers.insert(0, (b"Host", parts.netloc.encode()))
        await upstream.send(h11.Request(method=request.method, target=target.encode(),
                                        headers=headers, http_version=b"1.1"))
        # The body first, then the response: Chromium never waits for `100 Continue`.
        while True:
            event = await client.next_event()
            if isinstance(event, h11.Data):
                await upstream.send(h11.Data(data=event.data))
            elif isinstance(event, h11.EndOfMessage):
                await upstream.send(h11.EndOfMessage(headers=event.headers))
                break
            else:
                raise h11.ProtocolError(f"unexpected {type(event).__name__} in a request body")
        while True:
            event = await upstream.next_event(self._idle_s)
            if isinstance(event, h11.InformationalResponse):
                await client.send(h11.InformationalResponse(
                    status_code=event.status_code, reason=event.reason,
                    headers=_end_to_end(event.headers, event.status_code == 101)))
                if event.status_code == 101:
                    return await self._upgraded(client, upstream)
            elif isinstance(event, h11.Response):
                await client.send(h11.Response(status_code=event.status_code,
                                               reason=event.reason,
                                               headers=_end_to_end(event.headers, False)))
            elif isinstance(event, h11.Data):
                await client.send(h11.Data(data=event.data))
            elif isinstance(event, h11.EndOfMessage):
                await client.send(h11.EndOfMessage(headers=event.headers))
                break
            else:  # ConnectionClosed before the response ended
                raise ConnectionResetError("the upstream server closed mid-response")
        client.next_cycle()
        if upstream.next_cycle():
            return upstream
        upstream.close()
        return None

    async def _upgraded(self, client: _Client, upstream: _Upstream) -> None:
        """A WebSocket over plain http (Chromium tunnels its own; others may not)."""
        early_up, _ = upstream.conn.trailing_data
        early_client, _ = client.conn.trailing_data
        if early_up:
            client.writer.write(early_up)
        if early_client:
            upstream.writer.write(early_client)
        try:
            await _splice(client.reader, client.writer, upstream.reader, upstream.writer,
                          self._idle_s)
        finally:
            upstream.close()
            self._writers.discard(upstream.writer)
        return None

    # -- the policy and the connection to a checked address --------------------------------

    async def _admitted(self, client: _Client, url: str, *,
                        tunnel: bool) -> list[IPAddress] | None:
        verdict = await self.policy.admit(url, tunnel=tunnel)
        if isinstance(verdict, Refusal):
            self.refused += 1
            try:
                self._on_refusal(verdict)
            except Exception:
                _log.exception("reporting the egress proxy's refusal of %s failed", url)
            await client.refuse(403, f"{verdict}\n", close=True)
            return None
        if not verdict.addresses:
            await client.refuse(502, f"{url}: {verdict.host} does not resolve\n", close=True)
            return None
        return verdict.addresses

    async def _connect(self, client: _Client, url: str, addresses: list[IPAddress],
                       port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the first of `addresses` that answers: the checked addresses
        themselves, so nothing is resolved again between the check and the connection."""
        problems = []
        for address in addresses:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(str(address), port, limit=_MAX_HEADERS),
                    self._connect_s)
            except OSError as exc:  # TimeoutError among them
                problems.append(f"{address}: {exc.strerror or 'timed out'}")
        await client.refuse(502, f"{url} could not be reached ({'; '.join(problems)})\n",
                            close=True)
        return None


class _Client:
    """The browser's side of one connection: h11 as a server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 idle_s: float) -> None:
        self.reader, self.writer, self._idle_s = reader, writer, idle_s
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADERS)

    async def next_request(self) -> h11.Request | None:
        """The next request's head, or None once the browser is done with the connection."""
        event = await self.next_event()
        if isinstance(event, h11.Request):
            return event
        return None

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await asyncio.wait_for(self.reader.read(_READ), self._idle_s)
            self.conn.receive_data(data)

    async def send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def refuse(self, status: int, text: str,
                     headers: list[tuple[bytes, bytes]] | None = None, *,
                     close: bool = False) -> None:
        """Answers the current request with `status` and `text`; the connection goes on
        unless `close` (its request body, if any, was not read) or h11 says it cannot."""
        body = text.encode()
        head = [(b"Content-Type", b"text/plain; charset=utf-8"),
                (b"Content-Length", str(len(body)).encode()), *(headers or [])]
        if close:
            head.append((b"Connection", b"close"))
        await self.send(h11.Response(status_code=status, headers=head))
        await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())
        if close:
            raise ConnectionAbortedError(f"refused with {status}")
        while self.conn.their_state is h11.SEND_BODY:  # the refused request's body
            if isinstance(await self.next_event(), h11.ConnectionClosed):
                break
        self.next_cycle()

    def next_cycle(self) -> None:
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        else:
            raise ConnectionAbortedError("the browser's connection cannot take another request")


class _Upstream:
    """The server's side: h11 as a client, on a connection to a checked address."""

    def __init__(self, key: tuple[str, int], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.key, self.reader, self.writer = key, reader, writer
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEADERS)
        self.closed = False

    async def send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def next_event(self, idle_s: float) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await asyncio.wait_for(self.reader.read(_READ), idle_s)
            self.conn.receive_data(data)

    def next_cycle(self) -> bool:
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            return True
        return False

    def reusable(self) -> bool:
        return (not self.closed and self.conn.our_state is h11.IDLE
                and not self.reader.at_eof())

    def close(self) -> None:
        self.closed = True
        self.writer.close()


def _closed(upstream: _Upstream | None) -> None:
    if upstream is not None:
        upstream.close()


async def _splice(a_reader: asyncio.StreamReader, a_writer: asyncio.StreamWriter,
                  b_reader: asyncio.StreamReader, b_writer: asyncio.StreamWriter,
                  idle_s: float) -> None:
    """Copies bytes both ways until one side closes, or neither sends for `idle_s`."""
    last = [time.monotonic()]

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                data = await asyncio.wait_for(reader.read(_READ),
                                              max(0.05, last[0] + idle_s - time.monotonic()))
            except TimeoutError:
                if time.monotonic() - last[0] >= idle_s:
                    return
                continue
            if not data:
                return
            last[0] = time.monotonic()
            writer.write(data)
            await writer.drain()

    pumps = [asyncio.ensure_future(pump(a_reader, b_writer)),
             asyncio.ensure_future(pump(b_reader, a_writer))]
    try:
        done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                _log.debug("egress tunnel ended: %r", task.exception())
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


def _authority(target: str) -> tuple[str | None, int]:
    """CONNECT's `host:port` (`[v6]:port` for an IPv6 address)."""
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host or not 0 < int(port) < 65536:
        return None, 0
    return host.strip("[]").lower(), int(port)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _header(message: h11.Request, name: bytes) -> bytes | None:
    for key, value in message.headers:
        if key == name:
            return value
    return None


def _end_to_end(headers: Any, upgrade: bool) -> list[tuple[bytes, bytes]]:
    """`headers` less the hop-by-hop ones (and those `Connection` names); an upgrade
    keeps `Connection: upgrade` and `Upgrade`, which are what it asks for."""
    named = {token.strip().lower() for key, value in headers if key == b"connection"
             for token in value.split(b",")}
    kept = [(key, value) for key, value in headers
            if key not in _HOP and key not in named]
    if upgrade:
        kept += [(key, value) for key, value in headers if key == b"upgrade"]
        kept.append((b"Connection", b"upgrade"))
    return kept


__all__ = ["EgressProxy", "ProxyState"]
