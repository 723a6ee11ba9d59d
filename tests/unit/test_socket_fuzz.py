"""Garbage on a viewer's socket: every kind closes it with a code and a reason, and
leaves no task behind. No Ray: ViewerSockets against a fake socket and registry."""

from __future__ import annotations

import asyncio
import json
import random

from pipeline.config import Settings
from pipeline.models import SessionRecord, SessionSpec, SessionState
from serve.viewer_socket import ViewerSockets
from tests.unit.fake_socket import FakeSocket


class _Metrics:
    def viewers(self, count: int) -> None:
        pass

    def latency(self, event_ts_ms: float) -> None:
        pass


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
    sockets = ViewerSockets(Settings(hello_timeout_s=1.0), _Registry(), _Metrics())
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
    sockets = ViewerSockets(Settings(hello_timeout_s=0.2), _Registry(), _Metrics())
    socket = FakeSocket()
    await asyncio.wait_for(sockets.live(socket, "abc"), 5)
    assert socket.closed == (4408, "no hello within 0.2 s")
