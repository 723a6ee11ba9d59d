"""The gateway's WebSocket handler closes with 1011 and a reason when it fails after accept.

No Ray here: the handler runs against a stand-in socket and a registry whose call fails,
as a registry that went away would.
"""

from __future__ import annotations

import json

from pipeline.config import Settings
from serve.gateway import Gateway


class _Socket:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None

    async def accept(self) -> None:
        pass

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int, reason: str = "") -> None:
        self.closed = (code, reason)


class _FailingCall:
    def remote(self, *args: object) -> object:
        async def fail() -> None:
            raise ConnectionError("registry unreachable")

        return fail()


class _Registry:
    get = _FailingCall()


async def test_a_failure_after_accept_closes_1011_with_a_reason() -> None:
    gateway = object.__new__(Gateway.func_or_class)  # no Ray: only what the handler uses
    gateway._registry = _Registry()
    gateway._settings = Settings()
    socket = _Socket()
    await gateway._serve_viewer(socket, "abc")
    assert socket.closed == (1011, "internal error: ConnectionError")
    error = json.loads(socket.sent[-1])
    assert error["type"] == "error" and error["code"] == 1011
