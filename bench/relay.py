"""The single-process relay both baselines share (bench/seed_baseline.py,
bench/screencast_baseline.py): one FastAPI/uvicorn app that takes messages off a queue
and sends each to every connected viewer on `/ws`, the way the seed's design and
screencast live views relay.

`GET /healthz` answers the relay's `state` (with `ready` once the lifespan sets it), the
number of viewers, and the queue's length.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

Send = Callable[[WebSocket, Any], Awaitable[None]]
Lifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]


class Relay:
    def __init__(self, send: Send, encode: Callable[[Any], Any] | None = None,
                 **counters: int) -> None:
        """`encode` turns a queued message into what `send` sends, once for all viewers."""
        self.state: dict[str, Any] = {"ready": False, "sent": 0, **counters}
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.viewers: set[WebSocket] = set()
        self.server: uvicorn.Server | None = None
        self._send = send
        self._encode = encode

    async def broadcast(self) -> None:
        """Sends every queued message to every viewer, in order; drops a viewer that fails."""
        while True:
            message = await self.queue.get()
            if self._encode is not None:
                message = self._encode(message)
            for ws in list(self.viewers):
                try:
                    await self._send(ws, message)
                    self.state["sent"] += 1
                except Exception:
                    self.viewers.discard(ws)

    def stop_after(self, seconds: float) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(seconds, self._stop)

    def _stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True

    def build(self, lifespan: Lifespan) -> uvicorn.Server:
        """The app with its lifespan, as a server on 127.0.0.1 (port set by `serve`)."""
        app = FastAPI(lifespan=lifespan)

        @app.get("/healthz")
        async def healthz() -> dict[str, Any]:
            return {**self.state, "viewers": len(self.viewers), "queued": self.queue.qsize()}

        @app.websocket("/ws")
        async def ws_endpoint(ws: WebSocket) -> None:
            await ws.accept()
            self.viewers.add(ws)
            try:
                while True:
                    await ws.receive_text()
            except WebSocketDisconnect:
                pass
            finally:
                self.viewers.discard(ws)

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        return self.server


def main(prog: str, build: Callable[[str, float], uvicorn.Server],
         argv: list[str] | None = None) -> int:
    """A baseline's command line: `--url URL --port PORT [--seconds-max 300]`."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds-max", type=float, default=300.0)
    args = parser.parse_args(argv)
    server = build(args.url, args.seconds_max)
    server.config.port = args.port
    server.run()
    return 0


__all__ = ["Relay", "main"]
