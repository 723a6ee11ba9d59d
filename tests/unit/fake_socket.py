"""A stand-in for Starlette's WebSocket: what ViewerSockets reads and what it sent."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any


@dataclass
class _Client:
    host: str


class FakeSocket:
    def __init__(self, *messages: dict[str, Any], headers: dict[str, str] | None = None,
                 peer: str = "127.0.0.1") -> None:
        """`messages`: what the client sends, in order (dicts are sent as JSON text);
        after them the client stays silent."""
        self.headers = headers or {}
        self.client = _Client(peer)
        self.accepted = False
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self._incoming = [{"type": "websocket.receive", "text": json.dumps(m)}
                          for m in messages]

    async def accept(self) -> None:
        self.accepted = True

    async def receive(self) -> dict[str, Any]:
        if self._incoming:
            return self._incoming.pop(0)
        await asyncio.Event().wait()  # silent from here on
        raise AssertionError("unreachable")

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int, reason: str = "") -> None:
        self.closed = (code, reason)


class NoMetrics:
    """A GatewayReport that keeps nothing."""

    def viewers(self, count: int) -> None:
        pass

    def latency(self, event_ts_ms: float) -> None:
        pass

    def pictures_skipped(self, count: int) -> None:
        pass


def hello(token: str | None = None) -> dict[str, Any]:
    return {"type": "hello", "protocol": 1, "token": token, "acks": True}


__all__ = ["FakeSocket", "NoMetrics", "hello"]
