"""rrstream's Python client: the REST API and protocol v1 viewers (docs/protocol.md).

    async with Client("http://127.0.0.1:8000") as client:
        session = await client.create_session("https://example.com")
        async with client.viewer(session["id"], reconnect=True) as viewer:
            frame = await viewer.wait_for(lambda f: f.full_snapshot, timeout_s=30)

It imports no Ray (httpx, websockets, orjson and the protocol and codec modules only), so
any script can use it; the CLI, the tests and the benchmarks do.
"""

from __future__ import annotations

from serve.client.connection import Connection, SocketOptions, open_socket
from serve.client.errors import (
    ApiError,
    BadFrame,
    ClientError,
    ConnectFailed,
    ExportFailed,
    GatewayUnreachable,
    ProtocolError,
    SequenceGap,
    StreamClosed,
)
from serve.client.frames import EventType, Frame, StreamDecoder, stored_frames
from serve.client.messages import (
    CLIENT_RECONNECTS,
    FINAL_CLOSE_CODES,
    ControlMessage,
    ack,
    hello,
    parse_control,
)
from serve.client.rest import Client, api_error
from serve.client.viewer import Gap, Reconnect, Viewer, ViewerState, ViewerStats

__all__ = [
    "CLIENT_RECONNECTS",
    "FINAL_CLOSE_CODES",
    "ApiError",
    "BadFrame",
    "Client",
    "ClientError",
    "ConnectFailed",
    "Connection",
    "ControlMessage",
    "EventType",
    "ExportFailed",
    "Frame",
    "Gap",
    "GatewayUnreachable",
    "ProtocolError",
    "Reconnect",
    "SequenceGap",
    "SocketOptions",
    "StreamClosed",
    "StreamDecoder",
    "Viewer",
    "ViewerState",
    "ViewerStats",
    "ack",
    "api_error",
    "hello",
    "open_socket",
    "parse_control",
    "stored_frames",
]
