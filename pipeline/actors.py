"""The Ray actors of the data path, and the adapters that let plain classes call them.

Each actor class is its plain-Python core (tested without Ray) plus logging and metrics
set up in its worker: `session:<id>` is a BrowserSessionActor, `browser:<node id>` a
BrowserHostActor, `streamer:<node id>` a StreamerActor (the registry, `registry`, is in
pipeline/registry_actor.py). The adapters below implement the small Protocols the cores
are written against (BatchSink, SharedBrowser, Supervisor) over actor handles, so the
cores never see Ray.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import ray

from pipeline.asset_cache import Asset
from pipeline.browser import BrowserEndpoint
from pipeline.browser_host import BrowserHost
from pipeline.config import Settings
from pipeline.logs import configure_logging
from pipeline.metrics import SessionMetrics, StreamMetrics
from pipeline.models import Checkpoint
from pipeline.protocol import PageBatch
from pipeline.session import BrowserSession
from pipeline.streamer import Streamer, StreamRef


class StreamerSink:
    """A BatchSink into one session's stream in its node's Streamer actor, and an AssetSink
    into that node's asset cache (pipeline/asset_capture.py)."""

    def __init__(self, stream: StreamRef) -> None:
        self.stream = stream

    async def push(self, batches: list[PageBatch]) -> int:
        ref = self.stream
        return await ref.streamer.push.remote(ref.session_id, ref.epoch, batches)

    async def close(self) -> None:
        ref = self.stream
        await ref.streamer.close.remote(ref.session_id, ref.epoch)

    async def put_asset(self, asset: Asset) -> None:
        await self.stream.streamer.put_asset.remote(asset)


class HostClient:
    """A SharedBrowser backed by the node's BrowserHost actor."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def endpoint(self, executable: str | None,
                       failed: BrowserEndpoint | None = None) -> BrowserEndpoint:
        return await self._handle.endpoint.remote(executable, failed)


class RegistrySupervisor:
    """A Supervisor that tells the registry actor; fire and forget, so a registry being
    restarted holds up no page (the next report carries everything the lost one did)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def report(self, session_id: str, checkpoint: Checkpoint) -> None:
        self._handle.report.remote(session_id, checkpoint)

    def stream_lost(self, session_id: str) -> None:
        self._handle.stream_lost.remote(session_id)


REGISTRY_NAME = "registry"


class BrowserSessionActor(BrowserSession):
    """BrowserSession as a Ray actor; its stream is connected once placed beside it."""

    def __init__(self, session_id: str, settings: Settings) -> None:
        configure_logging()
        super().__init__(session_id, settings, sink=None, metrics=SessionMetrics())

    def connect(self, stream: StreamRef, host: Any = None) -> None:
        """`host`: the node's BrowserHost actor, when sessions share a Chromium."""
        self.set_sink(StreamerSink(stream))
        if host is not None:
            self.use_host(HostClient(host))
        registry = ray.get_actor(REGISTRY_NAME, namespace=self._settings.namespace)
        self.set_supervisor(RegistrySupervisor(registry))

    async def reconnect(self, stream: StreamRef) -> None:
        """Its stream was reopened in a new epoch: push there, from a new checkout."""
        self.attach_stream(StreamerSink(stream))

    def worker_pid(self) -> int:
        """The actor's worker process (for operators' tools and the fault tests)."""
        return os.getpid()


class BrowserHostActor(BrowserHost):
    def __init__(self, settings: Settings) -> None:
        configure_logging()
        super().__init__(settings)
        self._instance = uuid.uuid4().hex

    def instance(self) -> str:
        """A new value every time the actor (re)starts (pipeline/nodes.py)."""
        return self._instance


class StreamerActor(Streamer):
    def __init__(self, settings: Settings) -> None:
        configure_logging()
        super().__init__(settings, metrics=StreamMetrics())

    def worker_pid(self) -> int:
        """The actor's worker process (for operators' tools and the fault tests)."""
        return os.getpid()


__all__ = ["REGISTRY_NAME", "BrowserHostActor", "BrowserSessionActor", "HostClient",
           "RegistrySupervisor", "StreamerActor", "StreamerSink"]
