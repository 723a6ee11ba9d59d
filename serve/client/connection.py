"""One WebSocket of a viewer: how every rrstream client opens it, the handshake, and
receiving with acks and an idle watchdog. What outlives a connection (the decoder, what
was applied) is the Viewer's (serve/client/viewer.py); a Connection hands it each message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from pipeline.protocol import Welcome
from serve.client.errors import ConnectFailed, ProtocolError, StreamClosed
from serve.client.frames import Frame
from serve.client.messages import ControlMessage, ack, parse_control

if TYPE_CHECKING:
    from serve.client.viewer import Viewer

ABNORMAL_CLOSE = 1006  # RFC 6455: the connection dropped without a close frame


@dataclass(slots=True, frozen=True)
class SocketOptions:
    """How every rrstream client opens a WebSocket; `headers` is the one place request
    headers go. `compression="deflate"` offers permessage-deflate, as browsers do (the
    gateway declines it)."""

    headers: Mapping[str, str] | None = None
    compression: str | None = "deflate"
    max_size: int | None = None
    max_queue: int | None = 16
    open_timeout_s: float = 10.0
    ping_interval_s: float | None = 20.0


async def open_socket(url: str, options: SocketOptions) -> ClientConnection:
    """Opens `url`; failures (refused, an HTTP answer instead of a WebSocket, no answer in
    time) raise ConnectFailed."""
    try:
        return await connect(url, additional_headers=options.headers,
                             compression=options.compression, max_size=options.max_size,
                             max_queue=options.max_queue, open_timeout=options.open_timeout_s,
                             ping_interval=options.ping_interval_s)
    except TimeoutError as exc:
        raise ConnectFailed(url, f"no answer within {options.open_timeout_s:g} s") from exc
    except (OSError, WebSocketException) as exc:
        raise ConnectFailed(url, str(exc) or type(exc).__name__) from exc


def now_ms() -> float:
    return time.time() * 1000.0


class Connection:
    """One socket of a Viewer, after the handshake: `welcome` is in hand."""

    def __init__(self, viewer: Viewer, ws: ClientConnection, number: int) -> None:
        self.number = number
        self.welcome: Welcome | None = None
        self.closed: StreamClosed | None = None
        self._viewer = viewer
        self._ws = ws
        self._ack_seq: int | None = None  # newest batch applied and not acknowledged yet
        self._ack_bytes = 0
        self._ack_due: float | None = None  # loop time the pending ack goes out

    @property
    def extensions(self) -> list[str]:
        """The WebSocket extensions the server accepted (its response header)."""
        response = self._ws.response
        header = response.headers.get("Sec-WebSocket-Extensions") if response else None
        return [header] if header else []

    async def receive(self, timeout_s: float | None = None) -> Frame | ControlMessage:
        """Applies the next message and returns it. Raises TimeoutError after `timeout_s`,
        StreamClosed once the connection is over, SequenceGap or BadFrame for a frame the
        viewer could not apply (its state is dropped then)."""
        return await self._receive(timeout_s, self._viewer.idle_timeout_s)

    async def next_frame(self, timeout_s: float | None = None) -> Frame:
        """Applies messages until a binary frame comes; returns it."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            left = None if deadline is None else max(deadline - loop.time(), 0.0)
            item = await self.receive(left)
            if isinstance(item, Frame):
                return item

    async def send_text(self, text: str) -> None:
        """Sends a control message (protocol 1.1: take_control, hand_back, input)."""
        try:
            await self._ws.send(text)
        except ConnectionClosed as exc:
            raise self._lost(exc) from None

    async def close(self, code: int = 1000, reason: str = "viewer left") -> None:
        """Closes the connection with a close handshake."""
        if self.closed is None:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.close(code, reason)
            if self.closed is None:  # the receiving side may have seen the close first
                received = self._ws.protocol.close_rcvd
                self._end(StreamClosed(received.code, received.reason) if received is not None
                          else StreamClosed(code, reason), f"closed by the viewer: {reason}")

    def abort(self, why: str = "connection dropped by the viewer") -> None:
        """Drops the TCP connection without a close frame, as a failing network does."""
        if self.closed is None:
            if self._ws.transport is not None:
                self._ws.transport.abort()
            self._end(StreamClosed(ABNORMAL_CLOSE, ""), why)

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handshake(self, text: str, idle_s: float) -> Welcome:
        try:
            await self._ws.send(text)
        except ConnectionClosed:
            pass  # refused before it read our hello: what it said comes next, then the close
        while self.welcome is None:
            item = await self._receive(None, idle_s)
            if isinstance(item, Frame):  # pragma: no cover - _apply refuses this first
                raise ProtocolError("a binary frame before welcome")
        return self.welcome

    async def _receive(self, timeout_s: float | None,
                       idle_s: float | None) -> Frame | ControlMessage:
        if self.closed is not None:
            raise self.closed
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = None if timeout_s is None else now + timeout_s
        quiet_at = None if idle_s is None else now + idle_s
        while True:
            wake = min((t for t in (deadline, quiet_at, self._ack_due) if t is not None),
                       default=None)
            try:
                if wake is None:
                    raw = await self._ws.recv()
                else:
                    async with asyncio.timeout_at(wake):
                        raw = await self._ws.recv()
            except TimeoutError:
                now = loop.time()
                if self._ack_due is not None and now >= self._ack_due:
                    await self._send_ack()
                    continue
                if quiet_at is not None and now >= quiet_at:
                    self.abort(f"nothing received for {idle_s:g} s")
                    assert self.closed is not None
                    raise self.closed from None
                if deadline is not None and now >= deadline:
                    raise
                continue
            except ConnectionClosed as exc:
                raise self._lost(exc) from None
            arrival_ms = now_ms()
            if isinstance(raw, str):
                return self._viewer._apply_control(parse_control(raw), self)
            if self.welcome is None:
                raise ProtocolError("a binary frame before welcome")
            frame = self._viewer._apply_frame(raw, arrival_ms, self.number)
            if self._viewer.acks:
                await self._note_applied(frame, loop.time())
            return frame

    async def _note_applied(self, frame: Frame, now: float) -> None:
        # As the web viewer does: at most every ack_every_s, or at once after ack_bytes.
        self._ack_seq = frame.header.last_seq
        self._ack_bytes += frame.size
        if self._ack_bytes >= self._viewer.ack_bytes or (self._ack_due is not None
                                                           and now >= self._ack_due):
            await self._send_ack()
        elif self._ack_due is None:
            self._ack_due = now + self._viewer.ack_every_s

    async def _send_ack(self) -> None:
        seq, self._ack_seq, self._ack_due, self._ack_bytes = self._ack_seq, None, None, 0
        if seq is None:
            return
        try:
            await self._ws.send(ack(seq))
        except ConnectionClosed as exc:
            raise self._lost(exc) from None
        self._viewer.acked_seq = seq
        self._viewer.stats.acks_sent += 1

    def _lost(self, exc: ConnectionClosed) -> StreamClosed:
        if self.closed is None:
            received = exc.rcvd
            closed = (StreamClosed(received.code, received.reason) if received is not None
                      else StreamClosed(ABNORMAL_CLOSE, ""))
            why = (f"closed with {closed.code}" + (f": {closed.reason}" if closed.reason else "")
                   if received is not None else "connection lost")
            self._end(closed, why)
        assert self.closed is not None
        return self.closed

    def _end(self, closed: StreamClosed, why: str) -> None:
        self.closed = closed
        self._viewer._connection_ended(self, closed, why)


__all__ = ["ABNORMAL_CLOSE", "Connection", "SocketOptions", "open_socket"]
