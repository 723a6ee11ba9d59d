"""Starting and stopping the real stack for a benchmark, and making sure it is ours.

    with bench_stack(settings) as running:
        ... running.stack.base_url, running.site, running.chromium, running.registry

starts an embedded Ray on loopback (serve.app.start_ray), deploys the Serve gateway on
`settings.port`, and serves the benchmark's own pages (bench/stress_server.py). On the
way out it always shuts the stack down (serve.app.shutdown stops every session, then
Serve and Ray) and reaps any Chromium we started that did not exit (`running.leftovers`).

Before measuring, `until_routed_to_us` checks that the gateway port reaches *this*
stack: right after `serve.run`, HAProxy may still route to Serve's fallback proxy on
a fixed port that other Ray instances on the machine share. `ours` checks a session
made through the gateway against our own registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from bench.procs import ChromiumWatch
from bench.stress_server import StressServer
from pipeline.config import Settings
from pipeline.ports import free_port
from serve.client import ApiError, Client
from serve.viewer_tokens import new_secret

BENCH_API_KEY = "bench-api-key"


@dataclass(frozen=True, slots=True)
class Stack:
    base_url: str
    ws_url: str


@dataclass(slots=True)
class RunningStack:
    stack: Stack
    settings: Settings
    site: StressServer
    chromium: ChromiumWatch
    registry: Any
    leftovers: list[int] = field(default_factory=list)  # Chromium pids killed at the end

    @property
    def api_key(self) -> str | None:
        """The key REST calls need when the stack requires auth (`bench_settings(auth=True)`)."""
        return BENCH_API_KEY if self.settings.auth_required else None


async def ours(registry: Any, session_id: str) -> bool:
    """Whether our own registry knows the session a POST through the gateway port created."""
    try:
        await registry.get.remote(session_id)
        return True
    except Exception:
        return False


async def until_routed_to_us(api: Client, registry: Any, url: str) -> None:
    """Waits until the gateway port reaches this benchmark's stack, several times in a row.

    Right after `serve.run` HAProxy may still send requests to Serve's fallback proxy on
    127.0.0.1:8500, a fixed port other Ray instances on this machine share (SO_REUSEPORT),
    so a request can land in someone else's stack. A session made directly in our own
    registry tells the two apart without creating anything elsewhere.
    """
    from pipeline.models import SessionSpec

    record = await registry.create.remote(SessionSpec(url=url, name="bench-probe",
                                                      max_duration_s=60))
    try:
        streak = 0
        for _ in range(120):
            try:
                await api.session(record.id)
                streak += 1
            except ApiError:  # another stack's gateway: it does not know the session
                streak = 0
            if streak >= 5:
                return
            await asyncio.sleep(0.25)
        raise RuntimeError("the gateway port keeps reaching another stack than ours")
    finally:
        await registry.stop.remote(record.id)


def reap(chromium: ChromiumWatch) -> list[int]:
    """Gives closed browsers a moment to exit; kills (by pid) any of ours that did not."""
    deadline = time.monotonic() + 10
    while chromium.survivors() and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = chromium.kill_survivors()
    if killed:
        print(f"[bench] killed {len(killed)} Chromium processes left running: {killed}",
              file=sys.stderr)
    return killed


def bench_settings(*, auth: bool = False, **overrides: Any) -> Settings:
    """Settings for a benchmark stack: free ports, 4 browser slots, short retention, the
    per-client limits raised; with `auth`, an API key and viewer tokens required, as on a
    cluster (every stream then checks its token, origin and the limits)."""
    base: dict[str, Any] = {"port": free_port(), "browser_slots": 4,
                            # Recordings of a benchmark go to a store of its own, not
                            # into the user's ~/.rrstream/recordings.
                            "recordings_url": tempfile.mkdtemp(prefix="rrstream-bench-"),
                            "dashboard_port": free_port(), "ended_retention_s": 15,
                            # Every viewer of a benchmark comes from 127.0.0.1 (500 of
                            # them in bench.fanout): the per-client limits are raised.
                            "limit_stream_connects": "1000000/minute",
                            "limit_session_creations": "1000000/minute",
                            "max_connections_per_client": 1_000_000,
                            "max_viewers_per_session": 1_000_000}
    if auth:
        # The private-network block follows auth: it stays on (every request of the page
        # is checked in the browser), with the benchmark's own site on 127.0.0.1 allowed.
        base.update(auth="required", api_keys=[BENCH_API_KEY],
                    token_secret=SecretStr(new_secret()), allowed_hosts=["127.0.0.1"])
    return Settings(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


@contextlib.contextmanager
def bench_stack(settings: Settings) -> Iterator[RunningStack]:
    """The whole stack on loopback, always shut down (and stray Chromium reaped) after."""
    import ray

    from pipeline.actors import REGISTRY_NAME
    from serve.app import deploy_gateway, shutdown, start_ray

    stack = Stack(f"http://127.0.0.1:{settings.port}", f"ws://127.0.0.1:{settings.port}")
    chromium = ChromiumWatch()
    # A bare ray.init() joins the cluster named in /tmp/ray/ray_current_cluster (left by
    # anyone's `ray start` on this machine) instead of starting one: insist on our own.
    os.environ["RAY_ADDRESS"] = "local"
    with StressServer() as site:
        running: RunningStack | None = None
        try:
            start_ray(settings, dashboard=False)
            deploy_gateway(settings)
            registry = ray.get_actor(REGISTRY_NAME, namespace=settings.namespace)
            running = RunningStack(stack, settings, site, chromium, registry)
            yield running
        finally:
            shutdown(settings)
            killed = reap(chromium)
            if running is not None:
                running.leftovers = killed


__all__ = ["RunningStack", "Stack", "bench_settings", "bench_stack", "free_port", "ours",
           "reap", "until_routed_to_us"]
