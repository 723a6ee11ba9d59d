"""Garbage on a viewer's socket: every kind closes it with a code and a reason, and
leaves no task behind. No Ray: ViewerSockets against a fake socket and registry."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random

from pipeline.config import Settings
from pipeline.models import SessionRecord, SessionSpec, SessionState
from serve.viewer_socket import (
    MAX_MESSAGE_CHARS,
    MAX_MESSAGES_PER_S,
    MessageRate,
    ViewerSockets,
    _receive,
)
from tests.unit.fake_socket import FakeSocket, NoMetrics


class _Registry:
    """Knows every session; a bad hello must end the socket before its stream is asked."""

    async def get(self, session_id: str) -> SessionRecord:
        return SessionRecord(id=session_id, spec=SessionSpec(url="http://127.0.0.1:9/"),
                             state=SessionState.RUNNING, created_at=0.0)

    async def stream(self, *args: object) -> None:
        raise AssertionError("nothing after a bad hello may reach the stream")


def _raw(*texts: str | bytes) -> FakeSocket:
    socket = FakeSocket()
    socket._incoming = [{"type": "websocket.receive", "bytes": t} if isinstance(t, bytes)
                        else {"type": "websocket.receive", "text": t} for t in texts]
    return socket


def _garbage(seed: int) -> list[str | bytes]:
    rng = random.Random(seed)
    cases: list[str | bytes] = [
        b"\x00\x01binary hello", "not json", "[]", "null", '{"type": "ack", "seq": 1}',
        '{"type": "hello", "protocol": 99}', '{"type": "hello", "protocol": "one"}',
        '{"type": "hello", "protocol": 1, "resume_after": -5}',
        '{"type": "hello", "protocol": 1, "extra": true}', "{" * 10_000,
        json.dumps({"type": "hello", "protocol": 1, "token": "x" * 2_000_000}),
        "x" * 4_000_000,
    ]
    for _ in range(40):
        cases.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))).decode(
            "latin-1"))
    return cases


async def test_garbage_before_hello_closes_4400_with_a_reason_and_leaks_no_task() -> None:
    sockets = ViewerSockets(Settings(hello_timeout_s=1.0), _Registry(), NoMetrics())
    before = len(asyncio.all_tasks())
    for message in _garbage(seed=10):
        socket = _raw(message)
        await asyncio.wait_for(sockets.live(socket, "abc"), 5)
        assert socket.closed is not None, message[:80]
        code, reason = socket.closed
        assert code == 4400 and reason, (message[:80], socket.closed)
        assert len(reason) <= 120
        error = json.loads(socket.sent[-1])
        assert error["type"] == "error" and error["code"] == 4400
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before


async def test_silence_closes_4408_in_time() -> None:
    sockets = ViewerSockets(Settings(hello_timeout_s=0.2), _Registry(), NoMetrics())
    socket = FakeSocket()
    await asyncio.wait_for(sockets.live(socket, "abc"), 5)
    assert socket.closed == (4408, "no hello within 0.2 s")


async def _after_hello(*messages: str | bytes) -> tuple[FakeSocket, list[int]]:
    """What `_receive` (the reading side of a streaming socket) makes of `messages`."""
    socket, acks = _raw(*messages), []
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_receive(socket, acks.append), 1)
    return socket, acks


async def test_after_hello_garbage_closes_4400_and_acks_in_any_order_are_taken() -> None:
    for message in (b"\x00binary", "nonsense", '{"type": "ack"}', '{"type": "ack", "seq": -1}',
                    json.dumps({"type": "hello", "protocol": 1}), "x" * (MAX_MESSAGE_CHARS + 1)):
        socket, _ = await _after_hello(message)
        assert socket.closed is not None and socket.closed[0] == 4400, message[:40]
        assert socket.closed[1]
    socket, acks = await _after_hello(*(json.dumps({"type": "ack", "seq": s})
                                        for s in (5, 3, 10**12, 7)))
    assert socket.closed is None and acks == [5, 3, 10**12, 7]


async def test_a_flood_of_messages_closes_1013_with_the_limit() -> None:
    flood = [json.dumps({"type": "ack", "seq": n}) for n in range(MAX_MESSAGES_PER_S + 1)]
    socket, acks = await _after_hello(*flood)
    assert socket.closed == (1013, f"more than {MAX_MESSAGES_PER_S} messages a second from "
                                   "this viewer")
    assert len(acks) == MAX_MESSAGES_PER_S


def test_the_message_rate_starts_over_each_second() -> None:
    now = [0.0]
    rate = MessageRate(per_s=2, clock=lambda: now[0])
    assert [rate.over() for _ in range(3)] == [False, False, True]
    now[0] = 1.0
    assert not rate.over()
