"""uvicorn behaviour Serve does not expose, for the gateway replica's own HTTP server.

With the HAProxy ingress each replica runs uvicorn itself, and Serve builds its
`uvicorn.Config` without a way to pass options.
- Its default offers every client permessage-deflate, and every browser accepts it: each
  frame, already compressed once by the streamer (lz4 or deflate), would then be deflated
  again for every viewer. That was 37% of the replica's CPU at 500 viewers
  (bench/README.md, fan-out).
- As a replica stops, uvicorn closes every open WebSocket with 1012 and no reason; ours
  say why, so a viewer (and its user) knows to reconnect rather than that something broke.
"""

from __future__ import annotations

import functools
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

SHUTDOWN_REASON = "the gateway is restarting; reconnect"


def disable_permessage_deflate() -> None:
    """Makes `ws_per_message_deflate=False` the default of every uvicorn.Config created
    afterwards in this process (one that passes the option itself keeps its choice)."""
    init = uvicorn.Config.__init__
    if getattr(init, "_rrstream_no_deflate", False):
        return

    @functools.wraps(init)
    def config_init(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("ws_per_message_deflate", False)
        init(self, *args, **kwargs)

    config_init._rrstream_no_deflate = True  # type: ignore[attr-defined]
    uvicorn.Config.__init__ = config_init  # type: ignore[method-assign]


def close_with_reason_on_shutdown() -> None:
    """Makes uvicorn's server shutdown close each open WebSocket with 1012 and
    SHUTDOWN_REASON (uvicorn's own close carries no reason)."""
    shutdown = WebSocketsSansIOProtocol.shutdown
    if getattr(shutdown, "_rrstream_reason", False):
        return

    @functools.wraps(shutdown)
    def shutdown_with_reason(self: WebSocketsSansIOProtocol) -> None:
        send_close = self.conn.send_close

        def send_close_with_reason(code: int | None = None, reason: str = "") -> None:
            send_close(code, reason or SHUTDOWN_REASON)

        self.conn.send_close = send_close_with_reason  # type: ignore[method-assign]
        try:
            shutdown(self)
        finally:
            self.conn.send_close = send_close  # type: ignore[method-assign]

    shutdown_with_reason._rrstream_reason = True  # type: ignore[attr-defined]
    WebSocketsSansIOProtocol.shutdown = shutdown_with_reason  # type: ignore[method-assign]


__all__ = ["SHUTDOWN_REASON", "close_with_reason_on_shutdown", "disable_permessage_deflate"]
