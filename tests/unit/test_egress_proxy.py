"""The egress proxy with real sockets on loopback and no browser: a small HTTP server on
three loopback addresses (one port) stands in for the web, names resolve through a fake
resolver (never the system's DNS), and clients speak HTTP/1.1 to the proxy with h11."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import h11
import pytest

from pipeline.egress_proxy import EgressProxy, ProxyState
from pipeline.network_policy import AddressPolicy, IPAddress, Refusal

PUBLIC, OTHER, INSIDE = "127.0.0.2", "127.0.0.3", "127.0.0.4"


class ChangingResolver:
    """Answers from lists: the n-th question about a name gets its n-th answer (the last
    one from then on), as a name under an attacker's control may. Counts the questions."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(self, host: str) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        seen = self.asked.count(host)
        self.asked.append(host)
        answers = self.answers.get(host, [])
        if not answers:
            return []
        return [ipaddress.ip_address(answers[min(seen, len(answers) - 1)])]


@dataclass
class Web:
    """HTTP servers on PUBLIC, OTHER and INSIDE, one port: each answer says which address
    served it, what was asked and the body it got."""

    port: int
    served: list[str] = field(default_factory=list)  # the address of every connection


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  web: Web) -> None:
    address = writer.get_extra_info("sockname")[0]
    web.served.append(address)
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            assert isinstance(event, h11.Request)
            request, body = event, b""
            while not isinstance(event := conn.next_event(), h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Data):
                    body += event.data
            if dict(request.headers).get(b"upgrade") == b"echo":
                writer.write(conn.send(h11.InformationalResponse(status_code=101, headers=[
                    (b"Connection", b"upgrade"), (b"Upgrade", b"echo")])))
                writer.write(f"echo from {address}: ".encode() + conn.trailing_data[0])
                while data := await reader.read(65536):
                    writer.write(data)
                return
            host = dict(request.headers).get(b"host", b"").decode()
            headers = b",".join(sorted(name for name, _ in request.headers)).decode()
            text = (f"{address} {request.method.decode()} {request.target.decode()} {host} "
                    f"[{headers}] {body.decode()}")
            reply = text.encode()
            writer.write(conn.send(h11.Response(status_code=200, headers=[
                (b"Content-Length", str(len(reply)).encode())])))
            writer.write(conn.send(h11.Data(data=reply)) + conn.send(h11.EndOfMessage()))
            await writer.drain()
            conn.start_next_cycle()
    except (ConnectionError, h11.ProtocolError):
        return
    finally:
        writer.close()


@pytest.fixture
async def web() -> AsyncIterator[Web]:
    site = Web(0)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer(reader, writer, site)

    servers: list[asyncio.Server] = []
    for _ in range(20):  # the port must be free on all three addresses
        servers = [await asyncio.start_server(answer, PUBLIC, 0)]
        site.port = servers[0].sockets[0].getsockname()[1]
        try:
            for address in (OTHER, INSIDE):
                servers.append(await asyncio.start_server(answer, address, site.port))
            break
        except OSError:
            for server in servers:
                server.close()
            servers = []
    assert servers, "no port free on all three addresses"
    try:
        yield site
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


def policy(resolver: ChangingResolver) -> AddressPolicy:
    return AddressPolicy([PUBLIC, OTHER], resolver)  # INSIDE stays a refused loopback address


NAMES = {"public.test": [PUBLIC], "other.test": [OTHER], "inside.test": [INSIDE]}


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[EgressProxy, ChangingResolver, list[Refusal]]]:
    resolver = ChangingResolver(dict(NAMES))
    refusals: list[Refusal] = []
    egress = EgressProxy(policy(resolver), refusals.append)
    await egress.start()
    try:
        yield egress, resolver, refusals
    finally:
        await egress.close()


class Client:
    """One connection to the proxy, HTTP/1.1 by h11."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, egress: EgressProxy) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", egress.port))

    async def request(self, method: str, target: str, headers: list[tuple[str, str]],
                      body: bytes | list[bytes] = b"") -> tuple[int, dict[bytes, bytes], str]:
        chunks = body if isinstance(body, list) else [body] if body else []
        self.writer.write(self.conn.send(h11.Request(method=method, target=target,
                                                     headers=headers)))
        for chunk in chunks:
            self.writer.write(self.conn.send(h11.Data(data=chunk)))
        self.writer.write(self.conn.send(h11.EndOfMessage()))
        response: h11.Response | None = None
        text = b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await asyncio.wait_for(self.reader.read(65536), 5))
            elif isinstance(event, h11.Response):
                response = event
                if method == "CONNECT" and event.status_code == 200:
                    break
            elif isinstance(event, h11.Data):
                text += event.data
            elif isinstance(event, h11.EndOfMessage):
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                break
            else:
                raise AssertionError(f"unexpected {event!r}")
        assert response is not None
        return response.status_code, dict(response.headers), text.decode()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def auth(egress: EgressProxy, password: str | None = None) -> tuple[str, str]:
    token = base64.b64encode(f"{egress.username}:{password or egress.password}".encode())
    return ("Proxy-Authorization", f"Basic {token.decode()}")


async def tunnel_get(client: Client, host: str, port: int) -> str:
    """A GET through an open tunnel: what the server behind it answered."""
    inner = Client(client.reader, client.writer)
    _, _, text = await inner.request("GET", "/through", [("Host", f"{host}:{port}")])
    return text


async def test_connect_tunnels_to_the_address_checked_not_a_second_answer(
        proxy: tuple[EgressProxy, ChangingResolver, list[Refusal]], web: Web) -> None:
    """DNS rebinding: the name answers a public address first and an inside one after;
    the proxy asks once and connects to what it checked."""
    egress, resolver, refusals = proxy
    resolver.answers["rebind.test"] = [PUBLIC, INSIDE]
    client = await Client.open(egress)
    try:
        status, _, _ = await client.request("CONNECT", f"rebind.test:{web.port}",
                                            [("Host", f"rebind.test:{web.port}"), auth(egress)])
        assert status == 200
        assert (await tunnel_get(client, "rebind.test", web.port)).startswith(
            f"{PUBLIC} GET /through rebind.test:{web.port}")
    finally:
        await client.close()
    assert resolver.asked == ["rebind.test"]
    assert INSIDE not in web.served and refusals == []
    # The next connection asks again and gets the inside answer: refused.
    client = await Client.open(egress)
    try:
        status, _, text = await client.request(
            "CONNECT", f"rebind.test:{web.port}", [("Host", "x"), auth(egress)])
    finally:
        await client.close()
    assert status == 403 and f"resolves to {INSIDE}, a loopback address" in text
    assert INSIDE not in web.served
    assert [r.url for r in refusals] == [f"https://rebind.test:{web.port}/"]


async def test_a_refused_connect_and_a_refused_request_are_403_and_reported(
        proxy: tuple[EgressProxy, ChangingResolver, list[Refusal]], web: Web) -> None:
    egress, _, refusals = proxy
    for method, target in (("CONNECT", f"inside.test:{web.port}"),
                           ("GET", f"http://inside.test:{web.port}/secret"),
                           ("GET", f"http://{INSIDE}:{web.port}/secret"),
                           ("CONNECT", f"metadata.google.internal:{web.port}")):
        client = await Client.open(egress)
        try:
            status, headers, text = await client.request(method, target,
                                                         [("Host", "x"), auth(egress)])
        finally:
            await client.close()
        assert status == 403, (target, text)
        assert headers[b"content-type"].startswith(b"text/plain")
        assert "private networks are blocked (RRSTREAM_BLOCK_PRIVATE_NETWORKS)" in text
    assert web.served == []
    assert [(r.url, r.reason) for r in refusals] == [
        (f"https://inside.test:{web.port}/", f"resolves to {INSIDE}, a loopback address"),
        (f"http://inside.test:{web.port}/secret", f"resolves to {INSIDE}, a loopback address"),
        (f"http://{INSIDE}:{web.port}/secret", f"resolves to {INSIDE}, a loopback address"),
        (f"https://metadata.google.internal:{web.port}/",
         "names the cloud metadata service (metadata.google.internal)"),
    ]
    assert egress.refused == 4


async def test_without_the_credential_it_is_407_and_nothing_is_resolved(
        proxy: tuple[EgressProxy, ChangingResolver, list[Refusal]], web: Web) -> None:
    egress, resolver, _ = proxy
    client = await Client.open(egress)
    try:
        for headers in ([("Host", "x")], [("Host", "x"), auth(egress, "wrong")],
                        [("Host", "x"), ("Proxy-Authorization", "Bearer " + egress.password)]):
            status, answer, _ = await client.request("GET", f"http://public.test:{web.port}/",
                                                     headers)
            assert status == 407
            assert answer[b"proxy-authenticate"] == b'Basic realm="rrstream"'
            status, _, _ = await client.request("CONNECT", f"public.test:{web.port}", headers)
            assert status == 407
        # The same connection serves once the credential comes (as Chromium retries).
        status, _, text = await client.request("GET", f"http://public.test:{web.port}/ok",
                                               [("Host", f"public.test:{web.port}"),
                                                auth(egress)])
        assert status == 200 and text.startswith(f"{PUBLIC} GET /ok"), text
    finally:
        await client.close()
    assert resolver.asked == ["public.test"] and web.served == [PUBLIC]


async def test_requests_with_bodies_and_to_several_hosts_share_one_client_connection(
        proxy: tuple[EgressProxy, ChangingResolver, list[Refusal]], web: Web) -> None:
    egress, _, refusals = proxy
    client = await Client.open(egress)
    public, other = f"public.test:{web.port}", f"other.test:{web.port}"
    try:
        _, _, text = await client.request("GET", f"http://{public}/a?b=c",
                                          [("Host", public), auth(egress),
                                           ("Proxy-Connection", "keep-alive")])
        assert text == (f"{PUBLIC} GET /a?b=c {public} [host] "), text
        _, _, text = await client.request("POST", f"http://{other}/form",
                                          [("Host", other), auth(egress),
                                           ("Content-Length", "11")], b"hello=world")
        assert text.startswith(f"{OTHER} POST /form {other} [content-length,host] "
                               "hello=world"), text
        _, _, text = await client.request("PUT", f"http://{other}/chunked",
                                          [("Host", other), auth(egress),
                                           ("Transfer-Encoding", "chunked")],
                                          [b"one ", b"two ", b"three"])
        assert text.startswith(f"{OTHER} PUT /chunked {other} [host,transfer-encoding] "
                               "one two three"), text
        _, _, text = await client.request("GET", f"http://{public}/again",
                                          [("Host", public), auth(egress)])
        assert text.startswith(f"{PUBLIC} GET /again"), text
    finally:
        await client.close()
    # One client connection; upstream, a connection per change of host (the POST and the
    # PUT to other.test shared theirs).
    assert web.served == [PUBLIC, OTHER, PUBLIC] and refusals == []


async def test_close_ends_every_connection_and_leaves_no_task_or_socket(web: Web) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    tasks, fds = len(asyncio.all_tasks()), open_fds()
    egress = EgressProxy(policy(ChangingResolver(dict(NAMES))), lambda _: None)
    await egress.start()
    assert egress.state is ProxyState.RUNNING
    tunnel, idle = await Client.open(egress), await Client.open(egress)
    status, _, _ = await tunnel.request("CONNECT", f"public.test:{web.port}",
                                        [("Host", "x"), auth(egress)])
    assert status == 200
    assert await tunnel_get(tunnel, "public.test", web.port)
    await asyncio.sleep(0.05)
    assert egress.connections == 2
    await egress.close()
    assert egress.state is ProxyState.CLOSED and egress.connections == 0
    for client in (tunnel, idle):
        assert await asyncio.wait_for(client.reader.read(), 2) == b""  # closed by the proxy
        await client.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", egress.port)
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) == tasks
    assert open_fds() == fds


async def test_an_idle_connection_and_an_idle_tunnel_are_closed(web: Web) -> None:
    egress = EgressProxy(policy(ChangingResolver(dict(NAMES))), lambda _: None,
                         idle_timeout_s=0.3)
    async with egress:
        tunnel, idle = await Client.open(egress), await Client.open(egress)
        status, _, _ = await tunnel.request("CONNECT", f"public.test:{web.port}",
                                            [("Host", "x"), auth(egress)])
        assert status == 200
        for client in (tunnel, idle):
            assert await asyncio.wait_for(client.reader.read(), 3) == b""
            await client.close()
        await asyncio.sleep(0.05)
        assert egress.connections == 0


async def test_an_upgrade_over_plain_http_becomes_a_tunnel(
        proxy: tuple[EgressProxy, ChangingResolver, list[Refusal]], web: Web) -> None:
    """A WebSocket-style upgrade in absolute form (Chromium tunnels its own WebSockets
    with CONNECT; other clients may not)."""
    egress, _, _ = proxy
    reader, writer = await asyncio.open_connection("127.0.0.1", egress.port)
    try:
        conn = h11.Connection(h11.CLIENT)
        writer.write(conn.send(h11.Request(
            method="GET", target=f"http://public.test:{web.port}/socket",
            headers=[("Host", f"public.test:{web.port}"), auth(egress),
                     ("Connection", "Upgrade"), ("Upgrade", "echo")])))
        writer.write(conn.send(h11.EndOfMessage()))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await asyncio.wait_for(reader.read(65536), 5))
                continue
            break
        assert isinstance(event, h11.InformationalResponse) and event.status_code == 101
        assert (b"upgrade", b"echo") in event.headers
        writer.write(b"ping")
        echoed = conn.trailing_data[0]
        while not echoed.endswith(b"ping"):
            echoed += await asyncio.wait_for(reader.read(65536), 5)
        assert echoed == f"echo from {PUBLIC}: ping".encode()
    finally:
        writer.close()
        await writer.wait_closed()
