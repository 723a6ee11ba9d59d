"""Runs a uvicorn server from a thread of its own, so a test site answers while the
test's loop is busy (and between tests)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator

import uvicorn


@contextlib.contextmanager
def serving(server: uvicorn.Server, name: str,
            sockets: list[socket.socket] | None = None) -> Iterator[None]:
    """Serves until the block ends; `sockets`: bound ones to serve on instead of the
    config's host and port."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete,
                              args=(server.serve(sockets=sockets),), name=name, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        threading.Event().wait(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)
        loop.close()
