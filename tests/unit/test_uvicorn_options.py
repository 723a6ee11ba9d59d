"""The replica's uvicorn as rrstream sets it up: no permessage-deflate, and a shutdown that
closes every open WebSocket with 1012 and a reason (a real uvicorn server, in-process)."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from pipeline.ports import free_port
from serve.uvicorn_options import (
    SHUTDOWN_REASON,
    close_with_reason_on_shutdown,
    disable_permessage_deflate,
)


async def _hold(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hi")
    await websocket.receive()  # until the client or the server goes


@pytest.fixture
async def server() -> tuple[uvicorn.Server, int]:
    disable_permessage_deflate()
    close_with_reason_on_shutdown()
    port = free_port()
    app = Starlette(routes=[WebSocketRoute("/ws", _hold)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield server, port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_a_stopping_server_closes_viewers_with_1012_and_why(server) -> None:
    uv, port = server
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", compression="deflate") as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        assert await ws.recv() == "hi"
        uv.should_exit = True
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1012, SHUTDOWN_REASON)
