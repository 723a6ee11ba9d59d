"""Fakes of the control plane's Ray side (pipeline/cluster.py), for unit tests of the
registry, the node supervisor and the spares without Ray.

Each fake keeps the behaviour the registry relies on: a browser slot is held until the
actor is killed or dies; placement waits while no slot is free and, like Ray, hands a
freed slot to *any* waiter (here always the newest, the worst case for fairness); a dead
actor's calls raise ActorLost; a restarted streamer has a new instance and no streams.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from pipeline.control import next_state
from pipeline.errors import ActorLost
from pipeline.models import (
    Checkpoint,
    ControlAction,
    ControlChange,
    SessionRecord,
    SessionSpec,
    SessionState,
    SessionStatus,
    StreamStats,
)
from pipeline.registry import PoolNode
from pipeline.steps import Step
from pipeline.streamer import StreamRef

_instances = itertools.count(1)


class FakeSessionActor:
    def __init__(self, pool: FakePlacement, session_id: str, name: str, node_id: str) -> None:
        self.pool, self.session_id, self._name, self._node_id = pool, session_id, name, node_id
        self.state = SessionState.PENDING
        self.streams: list[StreamRef] = []  # connect, then each reconnect
        self.started_with: list[tuple[SessionSpec, Checkpoint | None]] = []
        self.warmed = False
        self.killed = False
        self.dead = False
        self.hang_on_stop = False
        self.added: list[Step] = []
        self.control: list[ControlChange] = []
        self._stopped = asyncio.Event()
        self._died = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    @property
    def node_id(self) -> str:
        return self._node_id

    def _alive(self) -> None:
        if self.dead or self.killed:
            raise ActorLost(f"session actor {self._name}", "its process was killed")

    async def _until(self, event: asyncio.Event) -> None:
        died = asyncio.ensure_future(self._died.wait())
        wanted = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({died, wanted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            died.cancel()
            wanted.cancel()
        self._alive()

    async def connect(self, stream: StreamRef, host: Any) -> None:
        self._alive()
        self.streams.append(stream)

    async def warm_up(self) -> None:
        self._alive()
        self.warmed = True

    async def start(self, spec: SessionSpec, resume: Checkpoint | None) -> SessionStatus:
        self._alive()
        self.started_with.append((spec, resume))
        if self.state is SessionState.PENDING:
            self.state = SessionState.RUNNING
        return await self.status()

    async def wait_stopped(self) -> SessionStatus:
        await self._until(self._stopped)
        return await self.status()

    async def stop(self) -> SessionStatus:
        self._alive()
        if self.hang_on_stop:
            await self._until(asyncio.Event())
        self.state = SessionState.STOPPED
        self._stopped.set()
        return await self.status()

    async def status(self) -> SessionStatus:
        self._alive()
        return SessionStatus(state=self.state, control=list(self.control))

    async def reconnect(self, stream: StreamRef) -> None:
        self._alive()
        self.streams.append(stream)

    async def pause(self, by: str) -> SessionStatus:
        return self._control(ControlAction.PAUSE, by)

    async def resume(self, by: str) -> SessionStatus:
        return self._control(ControlAction.RESUME, by)

    async def add_steps(self, steps: list[Step], by: str) -> SessionStatus:
        self.added.extend(steps)
        return self._control(ControlAction.STEPS, by, len(steps))

    def _control(self, action: ControlAction, by: str, steps: int | None = None) -> SessionStatus:
        """As the real session decides (pipeline/control.py), without its workflow."""
        self._alive()
        self.state = next_state(self.session_id, self.state, action)
        self.control.append(ControlChange(action=action, by=by, at=0.0, steps=steps))
        return SessionStatus(state=self.state, control=list(self.control))

    def finish(self, state: SessionState = SessionState.IDLE) -> None:
        """The workflow moved on (to idle), as the real session's status would say."""
        self.state = state
        if state.ended:
            self._stopped.set()

    def die(self) -> None:
        """Its process is killed: every call, pending or new, raises ActorLost."""
        self.dead = True
        self._died.set()
        self.pool.free(self)

    def kill(self) -> None:
        self.killed = True
        self._died.set()
        self.pool.free(self)


class FakePlacement:
    def __init__(self, slots: dict[str, int]) -> None:
        self.slots = dict(slots)
        self.alive_nodes = set(slots)
        self.live: dict[str, FakeSessionActor] = {}  # name -> actor holding a slot
        self.placed: list[FakeSessionActor] = []
        self._waiting: list[asyncio.Future[None]] = []

    def _free_node(self) -> str | None:
        for node_id, total in self.slots.items():
            used = sum(1 for a in self.live.values() if a.node_id == node_id)
            if node_id in self.alive_nodes and used < total:
                return node_id
        return None

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiting if not w.done())

    async def place(self, session_id: str, name: str) -> FakeSessionActor:
        while (node_id := self._free_node()) is None:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
        actor = FakeSessionActor(self, session_id, name, node_id)
        self.live[name] = actor
        self.placed.append(actor)
        return actor

    def free(self, actor: FakeSessionActor) -> None:
        if self.live.get(actor.name) is actor:
            del self.live[actor.name]
            pending = [w for w in self._waiting if not w.done()]
            if pending:
                pending[-1].set_result(None)  # the newest waiter: Ray keeps no order

    def adopt(self, name: str, node_id: str | None) -> FakeSessionActor | None:
        return self.live.get(name)

    def names(self) -> list[str]:
        return list(self.live)

    def kill(self, name: str) -> None:
        actor = self.live.get(name)
        if actor is not None:
            actor.kill()

    def nodes(self) -> list[PoolNode]:
        return [PoolNode(node_id, f"10.0.0.{i}", node_id in self.alive_nodes, slots)
                for i, (node_id, slots) in enumerate(self.slots.items())]

    def node_alive(self, node_id: str) -> bool:
        return node_id in self.alive_nodes

    def lose_node(self, node_id: str) -> None:
        self.alive_nodes.discard(node_id)
        for actor in [a for a in self.live.values() if a.node_id == node_id]:
            actor.die()


class FakeStreamer:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._instance = f"streamer-{next(_instances)}"
        self.held: dict[str, int] = {}
        self.opened: list[tuple[str, int]] = []
        self.recorded: dict[str, bool] = {}  # session id -> its stream records
        self.dropped: list[str] = []
        self.viewer_counts: dict[str, int] = {}
        self.unreachable = False
        self.dead = False
        self.released = False
        self.closed_all = False
        self.handle = self  # what a StreamRef carries

    async def instance(self) -> str:
        if self.dead:
            raise ActorLost("a streamer actor", "dead")
        if self.unreachable:
            raise ConnectionError("restarting")
        return self._instance

    def restart(self) -> None:
        """Ray brought it back: a new instance, and every stream is gone."""
        self._instance = f"streamer-{next(_instances)}"
        self.held.clear()

    def ref(self, session_id: str, epoch: int, node_id: str) -> StreamRef:
        return StreamRef(self, session_id, epoch, node_id)

    async def open(self, session_id: str, epoch: int, record: bool = True,
                   name: str | None = None) -> None:
        if self.unreachable or self.dead:
            raise ConnectionError("unreachable")
        self.held[session_id] = epoch
        self.opened.append((session_id, epoch))
        self.recorded[session_id] = record

    async def drop(self, session_id: str) -> None:
        self.held.pop(session_id, None)
        self.dropped.append(session_id)

    async def stats(self, session_id: str) -> StreamStats:
        return StreamStats(viewers=self.viewer_counts.get(session_id, 0))

    async def streams(self) -> dict[str, int]:
        return dict(self.held)

    async def viewers(self) -> dict[str, int]:
        return dict(self.viewer_counts)

    async def close_all(self) -> None:
        self.closed_all = True  # every stream ended and every recording flushed

    async def recordings(self) -> list[Any]:
        return []

    async def recording(self, recording_id: str) -> Any:
        raise KeyError(recording_id)

    async def delete_recording(self, recording_id: str) -> None:
        pass

    def release(self) -> None:
        self.released = True


class FakeBrowserHost:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.handle = f"browser-host-{node_id}"
        self.closed = False
        self.released = False

    async def instance(self) -> str:
        return self.handle

    async def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        self.released = True


class FakeNodeFactory:
    def __init__(self, placement: FakePlacement) -> None:
        self.placement = placement
        self.streamers: dict[str, FakeStreamer] = {}
        self.made: list[FakeStreamer] = []
        self.browsers: dict[str, FakeBrowserHost] = {}

    def streamer(self, node_id: str) -> FakeStreamer:
        current = self.streamers.get(node_id)
        if current is None or current.dead:  # like get_if_exists: the live one, else new
            current = self.streamers[node_id] = FakeStreamer(node_id)
            self.made.append(current)
        return current

    def browser(self, node_id: str) -> FakeBrowserHost:
        return self.browsers.setdefault(node_id, FakeBrowserHost(node_id))

    def node_alive(self, node_id: str) -> bool:
        return self.placement.node_alive(node_id)

    def existing(self) -> list[str]:
        return sorted({*(n for n, s in self.streamers.items() if not s.dead), *self.browsers})


class MemoryRecordStore:
    """The registry's records as the GCS would keep them, across registry restarts."""

    def __init__(self) -> None:
        self.saved: dict[str, str] = {}

    async def load(self) -> list[SessionRecord]:
        from pydantic import TypeAdapter

        adapter = TypeAdapter(SessionRecord)
        return [adapter.validate_json(v) for v in self.saved.values()]

    async def save(self, records: list[SessionRecord]) -> None:
        from pydantic import TypeAdapter

        adapter = TypeAdapter(SessionRecord)
        for record in records:
            self.saved[record.id] = adapter.dump_json(record).decode()

    async def delete(self, session_ids: list[str]) -> None:
        for session_id in session_ids:
            self.saved.pop(session_id, None)


async def until(predicate: Any, timeout_s: float = 2.0) -> None:
    """Lets the registry's tasks run until `predicate()` holds."""
    async with asyncio.timeout(timeout_s):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.005)


__all__ = ["FakeBrowserHost", "FakeNodeFactory", "FakePlacement", "FakeSessionActor",
           "FakeStreamer", "MemoryRecordStore", "until"]
