"""A stack with auth required: `rrstream up` in a process of its own (its own embedded
Ray), with known API keys and token secret and small limits, for the access tests (and,
with other settings, for the API's fuzz)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from serve.client import Client
from tests.conftest import free_port
from tests.integration.rrstream_up import rrstream_up

KEY, BURST_KEY = "integration-key", "burst-key"
MAX_VIEWERS = 3
CREATIONS_PER_MINUTE = 10  # the access tests create about 6 sessions with KEY


@dataclass(frozen=True)
class SecureStack:
    base_url: str
    output: str  # what `rrstream up` printed


@contextlib.asynccontextmanager
async def running_demo(client: Client) -> AsyncIterator[dict[str, Any]]:
    """A demo session that has recorded something, stopped afterwards."""
    info = await client.start_demo(idle_timeout_s=0)
    try:
        await client.wait_for_session(info["id"], lambda s: s["events"] > 0, 90)
        yield info
    finally:
        await client.stop_session(info["id"])


@contextlib.contextmanager
def secure_stack(overrides: Mapping[str, str] | None = None) -> Iterator[SecureStack]:
    """`overrides`: RRSTREAM_* variables that replace (or add to) the access tests' own."""
    port = free_port()
    env = {**os.environ,
           "RRSTREAM_AUTH": "required",
           "RRSTREAM_API_KEYS": f"{KEY},{BURST_KEY}",
           "RRSTREAM_TOKEN_SECRET": "integration-secret",
           "RRSTREAM_LIMIT_SESSION_CREATIONS": f"{CREATIONS_PER_MINUTE}/minute",
           "RRSTREAM_MAX_VIEWERS_PER_SESSION": str(MAX_VIEWERS),
           "RRSTREAM_BROWSER_SLOTS": "4",
           "RRSTREAM_WARM_BROWSERS": "0",
           **(overrides or {})}
    with rrstream_up("--port", str(port), "--dashboard-port", str(free_port()), "--no-demo",
                     env=env) as up:
        yield SecureStack(f"http://127.0.0.1:{port}", up.output)


__all__ = ["BURST_KEY", "CREATIONS_PER_MINUTE", "KEY", "MAX_VIEWERS", "SecureStack",
           "running_demo", "secure_stack"]
