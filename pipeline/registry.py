"""SessionRegistry: the named actor that creates, knows and stops every session.

It owns each session's two actors, `session:<id>` (holding a `browser` slot) and
`streamer:<id>` (pinned to the same node), so the Ray dashboard shows both under
their names and they live as long as the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pipeline.config import Settings
from pipeline.errors import SessionNotFound
from pipeline.models import SessionRecord, SessionSpec, SessionState, SessionStatus, StreamStats
from pipeline.session import ActorSink, BrowserSession
from pipeline.streamer import EventStreamer

REGISTRY_NAME = "registry"
_STATUS_TIMEOUT_S = 5.0
_log = logging.getLogger(__name__)


class BrowserSessionActor(BrowserSession):
    """BrowserSession as a Ray actor; its streamer is connected once placed beside it."""

    def __init__(self, session_id: str, spec: SessionSpec, settings: Settings) -> None:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        super().__init__(session_id, spec, settings, sink=None)

    def connect(self, streamer: Any) -> None:
        self.set_sink(ActorSink(streamer))


class _Entry:
    __slots__ = ("record", "session", "streamer", "ready", "task", "last_status")

    def __init__(self, record: SessionRecord) -> None:
        self.record = record
        self.session: Any = None
        self.streamer: Any = None
        self.ready = asyncio.Event()  # set once both actors exist (or creation failed)
        self.task: asyncio.Task[None] | None = None
        self.last_status: SessionStatus | None = None


class SessionRegistry:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._entries: dict[str, _Entry] = {}

    async def create(self, spec: SessionSpec) -> SessionRecord:
        session_id = secrets.token_hex(6)
        record = SessionRecord(id=session_id, spec=spec, state=SessionState.PENDING,
                               created_at=time.time())
        entry = _Entry(record)
        self._entries[session_id] = entry
        entry.task = asyncio.create_task(self._launch(entry), name=f"launch:{session_id}")
        return record

    async def _launch(self, entry: _Entry) -> None:
        record = entry.record
        ns = self._settings.namespace
        try:
            entry.session = ray.remote(BrowserSessionActor).options(
                name=f"session:{record.id}", namespace=ns, num_cpus=0,
                resources={"browser": 1}, max_concurrency=1_000,
            ).remote(record.id, record.spec, self._settings)
            # Resolves once Ray found a browser slot: the session is placed.
            node_id = await entry.session.node_id.remote()
            record.node_id = node_id
            entry.streamer = ray.remote(EventStreamer).options(
                name=f"streamer:{record.id}", namespace=ns, num_cpus=0, max_concurrency=10_000,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(record.id, self._settings)
            await entry.session.connect.remote(entry.streamer)
            record.state = SessionState.STARTING
            entry.ready.set()
            status: SessionStatus = await entry.session.start.remote()
            record.state, record.error, entry.last_status = status.state, status.error, status
            if not status.state.ended:
                status = await entry.session.wait_stopped.remote()
            entry.last_status = status
            record.state, record.error, record.ended_at = status.state, status.error, time.time()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            record.state = SessionState.FAILED
            record.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            record.ended_at = time.time()
            _log.error("session %s failed: %s", record.id, record.error)
        finally:
            entry.ready.set()
            if entry.session is not None:
                # Frees the browser slot. The streamer outlives its browser for a while so
                # viewers can drain it.
                with contextlib.suppress(Exception):
                    ray.kill(entry.session)
            if entry.streamer is not None:
                await asyncio.sleep(self._settings.ended_retention_s)
                streamer, entry.streamer = entry.streamer, None
                with contextlib.suppress(Exception):
                    ray.kill(streamer)

    def _entry(self, session_id: str) -> _Entry:
        try:
            return self._entries[session_id]
        except KeyError:
            raise SessionNotFound(session_id) from None

    async def get(self, session_id: str) -> SessionRecord:
        return self._entry(session_id).record

    async def list(self) -> list[SessionRecord]:
        return [e.record for e in self._entries.values()]

    async def streamer(self, session_id: str, wait_s: float = 60.0) -> Any:
        """The session's streamer handle, waiting while the session waits for a slot."""
        entry = self._entry(session_id)
        await asyncio.wait_for(entry.ready.wait(), wait_s)
        if entry.streamer is None:
            raise SessionNotFound(session_id)
        return entry.streamer

    async def describe(self, session_id: str) -> tuple[SessionRecord, SessionStatus | None,
                                                       StreamStats | None]:
        """The record plus the live status of both actors (None where unreachable)."""
        entry = self._entry(session_id)
        status, stats = entry.last_status, None
        if entry.session is not None and not entry.record.state.ended:
            with contextlib.suppress(Exception):
                status = await asyncio.wait_for(entry.session.status.remote(),
                                                _STATUS_TIMEOUT_S)
                entry.last_status = status
        if entry.streamer is not None:
            with contextlib.suppress(Exception):
                stats = await asyncio.wait_for(entry.streamer.stats.remote(), _STATUS_TIMEOUT_S)
        if status is not None and not entry.record.state.ended and entry.session is not None:
            entry.record.state = status.state
        return entry.record, status, stats

    async def describe_all(self) -> list[tuple[SessionRecord, SessionStatus | None,
                                               StreamStats | None]]:
        return list(await asyncio.gather(*(self.describe(i) for i in list(self._entries))))

    async def stop(self, session_id: str) -> SessionRecord:
        """Idempotent: stopping an ended session returns its record."""
        entry = self._entry(session_id)
        record = entry.record
        if record.state.ended:
            return record
        if entry.session is None:
            if entry.task is not None:
                entry.task.cancel()
            record.state, record.ended_at = SessionState.STOPPED, time.time()
            return record
        status = await entry.session.stop.remote()
        record.state, record.error, entry.last_status = status.state, status.error, status
        record.ended_at = record.ended_at or time.time()
        return record

    async def shutdown(self) -> None:
        """Stops every session (used before Ray goes down, so no Chromium is left)."""
        await asyncio.gather(*(self.stop(i) for i in list(self._entries)),
                             return_exceptions=True)


def get_or_create_registry(settings: Settings) -> Any:
    """The registry actor, created detached on first use so it outlives gateway replicas."""
    return ray.remote(SessionRegistry).options(
        name=REGISTRY_NAME, namespace=settings.namespace, get_if_exists=True,
        lifetime="detached", num_cpus=0, max_concurrency=10_000,
    ).remote(settings)


__all__ = ["REGISTRY_NAME", "SessionRegistry", "get_or_create_registry"]
