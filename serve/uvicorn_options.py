"""A uvicorn option Serve does not expose, for the gateway replica's own HTTP server.

With the HAProxy ingress each replica runs uvicorn itself, and Serve builds its
`uvicorn.Config` without a way to pass options. Its default offers every client
permessage-deflate, and every browser accepts it: each frame, already compressed once by
the streamer (lz4 or deflate), would then be deflated again for every viewer. That was
37% of the replica's CPU at 500 viewers (bench/README.md, fan-out).
"""

from __future__ import annotations

import functools
from typing import Any

import uvicorn


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


__all__ = ["disable_permessage_deflate"]
