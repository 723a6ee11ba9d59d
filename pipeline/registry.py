"""SessionRegistry: every session's record and lifecycle, and its supervision.

The registry places each session (`SessionActors`: Ray in production, a browser slot per
session, first come first placed), opens its stream on its node's streamer (through
`NodeActors`), starts it, and watches it until it ends. When a session actor dies it is
replaced per RRSTREAM_ON_SESSION_CRASH / RRSTREAM_ON_NODE_LOSS (within
RRSTREAM_MAX_RESTARTS), continuing from the last checkpoint the session reported. When a
node's streamer comes back without its streams, each of the node's sessions gets a new
stream in a new epoch. Every record is persisted (pipeline/records.py), and the actors a session
needs are detached and named, so a registry that Ray restarted adopts the running sessions
instead of losing them.

Plain Python: everything Ray is behind the Protocols below (pipeline/cluster.py has the Ray
side), so unit tests drive queueing, spares, stop-while-placing and every restart path
with fakes. docs/architecture.md tells who supervises whom and what each failure does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.config import Settings
from pipeline.control import next_state
from pipeline.errors import (
    ActorLost,
    PoolFull,
    SessionLost,
    SessionNotFound,
    StreamUnavailable,
    describe_error,
)
from pipeline.idle import IdleTimeouts
from pipeline.models import (
    Checkpoint,
    ControlAction,
    NodeSlots,
    PoolStatus,
    SessionRecord,
    SessionSpec,
    SessionState,
    SessionStatus,
    StreamStats,
)
from pipeline.nodes import NodeActors
from pipeline.records import SAVE_EVERY_S, RecordBook, RecordStore
from pipeline.spares import Spare, WarmSpares
from pipeline.steps import Step
from pipeline.streamer import StreamRef

_log = logging.getLogger(__name__)
_CALL_TIMEOUT_S = 5.0  # a status or stats call that takes longer is reported as unknown
STOP_TIMEOUT_S = 4.6  # the session stops itself within 4 s; past this its actor is killed
_STREAM_TIMEOUT_S = 30.0  # a streamer that does not come back by then fails its sessions
_IDLE_CHECK_EVERY_S = 5.0
_METRICS_EVERY_S = 5.0
# A session as `describe` tells it: its record, and the live status of both its actors.
Described = tuple[SessionRecord, SessionStatus | None, StreamStats | None]


class SessionActor(Protocol):
    """One session actor (pipeline/session.py). Every call raises ActorLost once the actor
    is dead: its process was killed, or its node was lost."""

    @property
    def name(self) -> str: ...

    @property
    def node_id(self) -> str: ...

    async def connect(self, stream: StreamRef, host: Any) -> None: ...

    async def warm_up(self) -> None: ...

    async def start(self, spec: SessionSpec, resume: Checkpoint | None) -> SessionStatus: ...

    async def wait_stopped(self) -> SessionStatus: ...

    async def stop(self) -> SessionStatus: ...

    async def status(self) -> SessionStatus: ...

    async def pause(self, by: str) -> SessionStatus: ...

    async def resume(self, by: str) -> SessionStatus: ...

    async def add_steps(self, steps: list[Step], by: str) -> SessionStatus: ...

    async def reconnect(self, stream: StreamRef) -> None:
        """Its stream was reopened (a new epoch): push there, starting at a checkout."""

    def kill(self) -> None:
        """Ends the actor now (frees its browser slot)."""


@dataclass(frozen=True, slots=True)
class PoolNode:
    node_id: str
    address: str
    alive: bool
    slots: int


class SessionActors(Protocol):
    """Where session actors come from: the browser pool (Ray's `browser` resource)."""

    async def place(self, session_id: str, name: str) -> SessionActor:
        """Creates a session actor where a browser slot is free, waiting while none is.
        Cancelled, it leaves nothing behind."""

    def adopt(self, name: str, node_id: str | None) -> SessionActor | None:
        """The live session actor of that name, placed on `node_id` (a restarted registry
        finds its sessions)."""

    def names(self) -> list[str]:
        """The names of every live session actor."""

    def kill(self, name: str) -> None:
        """Ends the live session actor of that name, if there is one."""

    def nodes(self) -> list[PoolNode]:
        """Every node of the pool, alive or not."""

    def node_alive(self, node_id: str) -> bool: ...


class RegistryReport(Protocol):
    """Where the registry reports its gauges (Prometheus in production)."""

    def report(self, by_state: dict[str, int], queued: int) -> None: ...


@dataclass(slots=True)
class _Entry:
    record: SessionRecord
    actor: SessionActor | None = None
    stream: StreamRef | None = None
    streamer_instance: str | None = None  # the streamer instance the stream was opened in
    connected: bool = False
    last_status: SessionStatus | None = None
    stopping: bool = False
    task: asyncio.Task[None] | None = None
    retiring: bool = False  # ended: its stream is dropped once its retention is over
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # a stream, or the end
    reattaching: asyncio.Lock = field(default_factory=asyncio.Lock)

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class SessionRegistry:
    def __init__(self, settings: Settings, actors: SessionActors, nodes: NodeActors,
                 store: RecordStore, *, on_restart: Callable[[str], None] | None = None,
                 metrics: RegistryReport | None = None,
                 clock: Callable[[], float] = time.time,
                 stop_timeout_s: float = STOP_TIMEOUT_S,
                 idle_check_every_s: float = _IDLE_CHECK_EVERY_S) -> None:
        """`on_restart(kind)` counts a session actor replacement (`session`) in metrics."""
        self._settings = settings
        self._actors = actors
        self._nodes = nodes
        self._records = RecordBook(store)
        self._on_restart = on_restart or (lambda kind: None)
        self._metrics = metrics
        self._clock = clock
        self._stop_timeout_s = stop_timeout_s
        self._idle_check_every_s = idle_check_every_s
        self._entries: dict[str, _Entry] = {}
        self._line = asyncio.Lock()  # sessions waiting for a slot, first come first placed
        self._spares = WarmSpares(settings.warm_browsers, self._make_spare, self._room,
                                  self._release_spare,
                                  refill_delay_s=settings.warm_refill_delay_s)
        self._idle = IdleTimeouts(settings.idle_timeout_s)
        self._tasks: set[asyncio.Task[None]] = set()
        self._started: asyncio.Task[None] | None = None
        self._closed = False

    # -- starting: a new registry, or one Ray restarted ----------------------------------------

    async def started(self) -> None:
        """Runs once, on the first call: adopts what a previous registry left (records,
        live session actors), then keeps spares, idle timeouts and records going."""
        if self._started is None:
            self._started = asyncio.create_task(self._start(), name="registry-start")
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        self._nodes.adopt()
        self._nodes.start()
        records = await self._records.load()
        claimed: set[str] = set()
        for record in records:
            entry = self._entries[record.id] = _Entry(record)
            if record.state.ended:
                continue
            actor = (self._actors.adopt(record.actor_name, record.node_id)
                     if record.actor_name else None)
            if actor is not None:
                claimed.add(actor.name)
                entry.actor, entry.connected = actor, True
            self._supervise(entry, adopted=actor is not None,
                            lost=actor is None and record.actor_name is not None)
        for name in self._actors.names():
            if name not in claimed:  # a spare, or a session whose record was never saved
                _log.info("stopping %s: no session record claims it", name)
                self._actors.kill(name)
        if records:
            _log.info("registry restarted: %d sessions known, %d adopted", len(records),
                      len(claimed))
        for coro, name in ((self._save_records(), "save"), (self._watch_idle(), "idle"),
                           (self._report_metrics(), "metrics")):
            self._spawn(coro, name)
        self._spares.refill()

    # -- creating and supervising sessions ----------------------------------------------------

    async def create(self, spec: SessionSpec) -> SessionRecord:
        await self.started()
        if self._settings.when_full == "refuse" and not self._spares.ready:
            total, used = self._slots_total(), self._slots_wanted()
            if used >= total:
                raise PoolFull(used, total)
        # A spare's stream is open already, and records: a session that must leave
        # nothing in storage (`record: false`) starts cold, with a stream of its own.
        spare = self._spares.take() if spec.record else None
        session_id = spare.id if spare else secrets.token_hex(6)
        record = SessionRecord(id=session_id, spec=spec, state=SessionState.PENDING,
                               created_at=self._clock())
        entry = self._entries[session_id] = _Entry(record)
        if spare is not None:  # placed, warmed and connected to its node's Chromium
            entry.actor, entry.stream, entry.connected = spare.actor, spare.stream, True
            record.node_id, record.actor_name, record.epoch = (spare.node_id, spare.actor.name,
                                                               spare.stream.epoch)
            entry.streamer_instance = self._nodes.streamer_instance(spare.node_id)
        record.queue_position = self._queue_position(entry)
        self._save(record)
        self._supervise(entry)
        _log.info("session %s created (warm: %s, queue position %s)", session_id,
                  spare is not None, record.queue_position, extra={"session_id": session_id})
        self._spares.refill()
        return record

    def _supervise(self, entry: _Entry, *, adopted: bool = False, lost: bool = False) -> None:
        entry.task = asyncio.create_task(self._run(entry, adopted, lost),
                                         name=f"session:{entry.record.id}")

    async def _run(self, entry: _Entry, adopted: bool, lost: bool) -> None:
        """The session's whole life: placed, started, watched until it ends; replaced when
        its actor is lost, as long as the policy allows."""
        record = entry.record
        try:
            while True:
                try:
                    if lost:
                        lost = False
                        raise ActorLost(f"session {record.id}'s actor",
                                        "it was gone when the registry restarted")
                    status = await (self._resume_watching(entry) if adopted
                                    else self._start_session(entry))
                    self._finish(entry, status.state, status.error, status)
                    break
                except ActorLost as exc:
                    adopted = False
                    refusal = self._replace(entry, exc)
                    if refusal is not None:
                        raise SessionLost(record.id, refusal) from exc
        except asyncio.CancelledError:
            raise  # whoever cancelled it (stop, shutdown) lets go of its actor
        except Exception as exc:
            if entry.stopping:  # stopped while starting: stopped is what was asked for
                self._finish(entry, SessionState.STOPPED, None, None)
            else:
                self._finish(entry, SessionState.FAILED, describe_error(exc), None)
                _log.error("session %s failed: %s", record.id, record.error,
                           extra={"session_id": record.id})
        self._release(entry)
        self._spares.refill()  # a slot may have come free

    async def _start_session(self, entry: _Entry) -> SessionStatus:
        record = entry.record
        if entry.actor is None:
            await self._place(entry)
        if not entry.connected:
            assert entry.actor is not None and record.node_id is not None
            await self._open_stream(entry)
            host = (self._nodes.browser(record.node_id).handle
                    if self._settings.shared_browser else None)
            assert entry.stream is not None
            await entry.actor.connect(entry.stream, host)
            entry.connected = True
        assert entry.actor is not None
        record.queue_position = None
        record.state = SessionState.STARTING
        self._save(record)
        entry.wake()
        resume = record.checkpoint if record.restarts else None
        status = await entry.actor.start(record.spec, resume)
        self._take_status(entry, status)
        if not status.state.ended:
            status = await entry.actor.wait_stopped()
        return status

    async def _resume_watching(self, entry: _Entry) -> SessionStatus:
        """An adopted session: check its stream is still there, then watch it again."""
        assert entry.actor is not None
        status = await entry.actor.status()
        self._take_status(entry, status)
        if status.state.ended:
            return status
        record = entry.record
        assert record.node_id is not None
        streamer = self._nodes.streamer(record.node_id)
        entry.stream = streamer.ref(record.id, record.epoch, record.node_id)
        try:
            entry.streamer_instance = await self._nodes.wait_streamer(record.node_id, 5.0)
            held = await streamer.streams()
        except Exception:
            held = {}
        if held.get(record.id) != record.epoch:
            await self._reattach(entry)  # the streamer restarted while we were away
        entry.wake()
        return await entry.actor.wait_stopped()

    def _replace(self, entry: _Entry, exc: ActorLost) -> str | None:
        """After the session actor died: makes way for a new one and returns None, or says
        why there is none."""
        record, settings = entry.record, self._settings
        node_lost = record.node_id is not None and not self._actors.node_alive(record.node_id)
        what = "its node was lost" if node_lost else "its browser session actor died"
        if entry.stopping:
            return "stopped"
        if (settings.on_node_loss if node_lost else settings.on_session_crash) == "fail":
            setting = "RRSTREAM_ON_NODE_LOSS" if node_lost else "RRSTREAM_ON_SESSION_CRASH"
            return f"{what} and {setting} is fail"
        if record.restarts >= settings.max_restarts:
            return (f"{what}, and it had been restarted {record.restarts} times already "
                    f"(RRSTREAM_MAX_RESTARTS)")
        record.restarts += 1
        self._on_restart("session")
        _log.warning("session %s %s (%s); restart %d", record.id,
                     "lost its node" if node_lost else "lost its actor", describe_error(exc),
                     record.restarts, extra={"session_id": record.id})
        self._release(entry, keep_stream=True)
        record.state, record.node_id, record.actor_name = SessionState.PENDING, None, None
        self._save(record)
        return None

    async def _place(self, entry: _Entry) -> None:
        record = entry.record
        suffix = f"#{record.restarts}" if record.restarts else ""
        # Ray does not place actors that wait for the same resource in the order they
        # asked: when a slot frees, a session created a moment ago can take it before one
        # that has waited. Sessions that have to wait therefore line up here and ask Ray
        # one at a time.
        full = self._slots_wanted() + self._spares.held > self._slots_total()
        if full and self._spares.held:
            await self._spares.shed()  # a waiting session comes before a spare
            full = self._slots_wanted() > self._slots_total()
        async with self._line if full else contextlib.nullcontext():
            actor = await self._actors.place(record.id, f"session:{record.id}{suffix}")
        entry.actor, entry.connected = actor, False
        record.node_id, record.actor_name = actor.node_id, actor.name
        self._save(record)

    def recording_sessions(self) -> set[str]:
        """The sessions not ended yet: their recordings are still being written. (Also
        asked from retention's thread: a copy of the entries is taken at once.)"""
        return {sid for sid, entry in list(self._entries.items())
                if not entry.record.state.ended}

    async def _open_stream(self, entry: _Entry) -> None:
        """Opens the session a stream on its node's streamer, in the next epoch."""
        record = entry.record
        assert record.node_id is not None
        old = entry.stream
        instance = await self._nodes.wait_streamer(record.node_id, _STREAM_TIMEOUT_S)
        streamer = self._nodes.streamer(record.node_id)
        epoch = record.epoch + 1
        await streamer.open(record.id, epoch, record.spec.record, record.spec.name)
        record.epoch, entry.streamer_instance = epoch, instance
        entry.stream = streamer.ref(record.id, epoch, record.node_id)
        self._save(record)
        if old is not None and old.node_id != record.node_id:
            # Readers of the stream on the node the session left see its end, and follow.
            self._later(self._drop_stream(old, 0.0), f"drop:{record.id}")
        entry.wake()

    async def _reattach(self, entry: _Entry) -> None:
        """The session's stream is gone (its streamer restarted): a new one, a new epoch."""
        async with entry.reattaching:
            record = entry.record
            if (entry.actor is None or record.state.ended or record.node_id is None
                    or not entry.connected):
                return
            current = self._nodes.streamer_instance(record.node_id)
            if entry.stream is not None and current == entry.streamer_instance:
                try:
                    held = await self._nodes.streamer(record.node_id).streams()
                except Exception:
                    held = {}
                if held.get(record.id) == record.epoch:
                    return  # the stream is there: someone already reopened it
            await self._open_stream(entry)
            assert entry.stream is not None
            await entry.actor.reconnect(entry.stream)
            _log.warning("session %s streams again in epoch %d", record.id, record.epoch,
                         extra={"session_id": record.id})

    async def streamer_restarted(self, node_id: str) -> None:
        """NodeActors saw the node's streamer come back empty: every session there gets a
        new stream."""
        entries = [e for e in self._entries.values()
                   if e.record.node_id == node_id and not e.record.state.ended and e.connected]
        results = await asyncio.gather(*(self._reattach(e) for e in entries),
                                       return_exceptions=True)
        for entry, result in zip(entries, results, strict=True):
            if isinstance(result, BaseException):
                _log.error("session %s could not get a new stream: %s", entry.record.id,
                           describe_error(result), extra={"session_id": entry.record.id})

    async def stream_lost(self, session_id: str) -> None:
        """The session could not push to its stream: check its streamer and reopen it."""
        entry = self._entry(session_id)
        node_id = entry.record.node_id
        if node_id is None or entry.record.state.ended:
            return
        await self._nodes.check(node_id)
        await self._nodes.wait_streamer(node_id, _STREAM_TIMEOUT_S)
        await self._reattach_after_loss(entry)

    async def _reattach_after_loss(self, entry: _Entry) -> None:
        # The session dropped what it could not push and waits for a stream; even if the
        # old one still exists, it gets a new one (the session takes a checkout for it).
        async with entry.reattaching:
            if entry.actor is None or entry.record.state.ended:
                return
            await self._open_stream(entry)
            assert entry.stream is not None
            await entry.actor.reconnect(entry.stream)

    def report(self, session_id: str, checkpoint: Checkpoint) -> None:
        """A session says where its workflow is."""
        entry = self._entries.get(session_id)
        if entry is None:
            return
        current = entry.record.checkpoint
        if current is None or checkpoint.version > current.version:
            entry.record.checkpoint = checkpoint
            self._save(entry.record)

    def _take_status(self, entry: _Entry, status: SessionStatus) -> None:
        entry.last_status = status
        entry.record.state, entry.record.error = status.state, status.error
        self._save(entry.record)

    def _finish(self, entry: _Entry, state: SessionState, error: str | None,
                status: SessionStatus | None) -> None:
        record = entry.record
        if status is not None:
            entry.last_status = status
        record.state, record.error = state, error
        record.ended_at = record.ended_at or self._clock()
        record.queue_position = None
        self._save(record)
        entry.wake()

    def _release(self, entry: _Entry, keep_stream: bool = False) -> None:
        """Lets go of the session's actor (its browser slot); the stream stays readable for
        RRSTREAM_ENDED_RETENTION_S once the session ended."""
        actor, entry.actor, entry.connected = entry.actor, None, False
        if actor is not None:
            actor.kill()
        if (not keep_stream and entry.stream is not None and entry.record.state.ended
                and not entry.retiring):
            entry.retiring = True
            self._later(self._retire(entry, entry.stream), f"retain:{entry.record.id}")

    async def _retire(self, entry: _Entry, stream: StreamRef) -> None:
        """An ended session's stream: readable (late viewers get its last segment, the API
        its counts) for RRSTREAM_ENDED_RETENTION_S, then dropped."""
        await self._drop_stream(stream, self._settings.ended_retention_s)
        if entry.stream is stream:
            entry.stream = None

    async def _drop_stream(self, stream: StreamRef, after_s: float) -> None:
        await asyncio.sleep(after_s)
        streamer = self._nodes.streamers().get(stream.node_id)
        if streamer is not None:
            with contextlib.suppress(Exception):
                await streamer.drop(stream.session_id)

    # -- warm spares ----------------------------------------------------------------------------

    def _room(self) -> bool:
        """A spare may be made: nobody waits for a slot and one is free beyond the rest."""
        return (not self._queued()
                and self._slots_wanted() + self._spares.held < self._slots_total())

    async def _make_spare(self) -> Spare:
        spare_id = secrets.token_hex(6)
        actor = await self._actors.place(spare_id, f"session:{spare_id}")
        try:
            entry = _Entry(SessionRecord(id=spare_id, spec=SessionSpec(demo=True),
                                         state=SessionState.PENDING, created_at=self._clock(),
                                         node_id=actor.node_id, actor_name=actor.name))
            entry.actor = actor
            await self._open_stream(entry)
            host = (self._nodes.browser(actor.node_id).handle
                    if self._settings.shared_browser else None)
            assert entry.stream is not None
            await actor.connect(entry.stream, host)
            await actor.warm_up()
        except BaseException:
            actor.kill()
            raise
        return Spare(spare_id, actor, actor.node_id, entry.stream)

    def _release_spare(self, spare: Spare) -> None:
        spare.actor.kill()
        self._later(self._drop_stream(spare.stream, 0.0), f"drop:{spare.id}")

    async def keep_warm(self) -> int:
        """Starts warming browsers up to RRSTREAM_WARM_BROWSERS; returns how many are ready."""
        await self.started()
        self._spares.refill()
        return len(self._spares.ready)

    # -- reading ------------------------------------------------------------------------------

    def _entry(self, session_id: str) -> _Entry:
        try:
            return self._entries[session_id]
        except KeyError:
            raise SessionNotFound(session_id) from None

    async def get(self, session_id: str) -> SessionRecord:
        await self.started()
        return self._entry(session_id).record

    async def list(self) -> list[SessionRecord]:
        await self.started()
        return [e.record for e in self._entries.values()]

    async def stream(self, session_id: str, after_epoch: int | None = None,
                     wait_s: float = 60.0) -> StreamRef:
        """The session's stream, once it has one newer than `after_epoch`; waits while the
        session waits for a slot or its stream is being reopened. Raises StreamUnavailable
        when the session ended without one, TimeoutError after `wait_s`."""
        await self.started()
        entry = self._entry(session_id)
        async with asyncio.timeout(wait_s):
            while True:
                stream, record = entry.stream, entry.record
                if stream is not None and (after_epoch is None or stream.epoch > after_epoch):
                    return stream
                if record.state.ended:
                    raise StreamUnavailable(session_id, str(record.state), record.error)
                await entry.changed.wait()

    async def describe(self, session_id: str) -> Described:
        """The record plus the live status of both actors (None where unreachable)."""
        await self.started()
        entry = self._entry(session_id)
        record = entry.record
        status, stats = entry.last_status, None
        if entry.actor is not None and entry.connected and not record.state.ended:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CALL_TIMEOUT_S):
                    status = await entry.actor.status()
                entry.last_status = status
                if not record.state.ended and record.state is not status.state:
                    record.state = status.state
                    self._save(record)
        if entry.stream is not None:
            streamer = self._nodes.streamers().get(entry.stream.node_id)
            if streamer is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(_CALL_TIMEOUT_S):
                        stats = await streamer.stats(session_id)
        record.queue_position = self._queue_position(entry)
        return record, status, stats

    async def describe_all(self) -> list[Described]:
        await self.started()
        return list(await asyncio.gather(*(self.describe(i) for i in list(self._entries))))

    async def pool(self) -> PoolStatus:
        """Nodes, their browser slots and actors, the sessions on each, and the queue."""
        await self.started()
        live = [e for e in self._entries.values() if not e.record.state.ended]
        spares = self._spares.ready
        nodes = []
        for node in self._actors.nodes():
            sessions = [e.record.id for e in live
                        if e.actor is not None and e.record.node_id == node.node_id]
            warm = sum(1 for s in spares if s.node_id == node.node_id)
            slots = node.slots if node.alive else 0
            if not (slots or sessions or warm):
                continue
            states = self._nodes.states(node.node_id)
            nodes.append(NodeSlots(node_id=node.node_id, address=node.address,
                                   alive=node.alive, slots_total=slots,
                                   slots_used=len(sessions) + warm, warm=warm,
                                   sessions=sessions, streamer=str(states.streamer),
                                   browser=str(states.browser)))
        return PoolStatus(
            nodes=nodes,
            slots_total=sum(n.slots_total for n in nodes),
            slots_used=sum(1 for e in live if e.actor is not None) + len(spares),
            queue=[e.record.id for e in self._queued()],
            when_full=self._settings.when_full,
        )

    async def ready(self) -> str | None:
        """None when the registry can start sessions; else why not (GET /readyz)."""
        await self.started()
        if self._slots_total() < 1:
            return "no browser slot on any live node"
        return None

    def _queued(self) -> list[_Entry]:
        waiting = [e for e in self._entries.values()
                   if e.actor is None and not e.record.state.ended]
        return sorted(waiting, key=lambda e: e.record.created_at)

    def _queue_position(self, entry: _Entry) -> int | None:
        if entry.actor is not None or entry.record.state.ended:
            return None
        return next((i + 1 for i, e in enumerate(self._queued()) if e is entry), None)

    def _slots_total(self) -> int:
        return sum(n.slots for n in self._actors.nodes() if n.alive)

    def _slots_wanted(self) -> int:
        return sum(1 for e in self._entries.values() if not e.record.state.ended)

    async def revoke_links(self, session_id: str) -> SessionRecord:
        """Every viewer link of the session minted so far stops working (the gateway closes
        the sockets that hold one); links minted afterwards work."""
        await self.started()
        record = self._entry(session_id).record
        record.link_generation += 1
        self._save(record)
        await self._records.flush()  # now: a registry restarted meanwhile must not undo it
        return record

    # -- workflow control -----------------------------------------------------------------------

    async def pause(self, session_id: str, by: str) -> Described:
        """Pauses the session's workflow at its next step boundary (pipeline/session.py
        `pause`); `by`: who asked. ControlRefused unless it is running. Answers as
        `describe`."""
        return await self._control(session_id, ControlAction.PAUSE,
                                   lambda actor: actor.pause(by))

    async def resume(self, session_id: str, by: str) -> Described:
        return await self._control(session_id, ControlAction.RESUME,
                                   lambda actor: actor.resume(by))

    async def add_steps(self, session_id: str, steps: list[Step], by: str) -> Described:
        return await self._control(session_id, ControlAction.STEPS,
                                   lambda actor: actor.add_steps(steps, by))

    async def session_actor(self, session_id: str) -> str:
        """The name of the session's actor, which a gateway calls directly while a person
        is in control (pipeline/takeover.py: each input is one call, not two). ControlRefused
        when it has none that takes control: waiting for a slot, being replaced, ended."""
        await self.started()
        return self._controllable(self._entry(session_id), ControlAction.TAKE).name

    def _controllable(self, entry: _Entry, action: ControlAction) -> SessionActor:
        """The entry's actor if it takes control calls; else ControlRefused for `action`."""
        record, actor = entry.record, entry.actor
        if record.state.ended or entry.stopping or actor is None or not entry.connected:
            # Only the session's own actor takes control calls: without one (waiting for a
            # slot, or being replaced) it counts as pending.
            state = (record.state if record.state.ended else SessionState.STOPPING
                     if entry.stopping else SessionState.PENDING)
            next_state(record.id, state, action)  # refuses: no such state takes any
        assert actor is not None
        return actor

    async def _control(self, session_id: str, action: ControlAction,
                       call: Callable[[SessionActor], Awaitable[SessionStatus]]) -> Described:
        await self.started()
        entry = self._entry(session_id)
        actor = self._controllable(entry, action)
        self._take_status(entry, await call(actor))
        return await self.describe(session_id)

    # -- stopping -----------------------------------------------------------------------------

    async def stop(self, session_id: str) -> SessionRecord:
        """Stops the session within STOP_TIMEOUT_S, by force if it does not stop by itself;
        idempotent (stopping an ended session returns its record)."""
        await self.started()
        entry = self._entry(session_id)
        record = entry.record
        entry.stopping = True
        if record.state.ended:
            return record
        actor = entry.actor
        if actor is None or not entry.connected:  # still waiting for a slot, or connecting
            if entry.task is not None:
                entry.task.cancel()
                await asyncio.gather(entry.task, return_exceptions=True)
            self._finish(entry, SessionState.STOPPED, None, None)
            self._release(entry)
            return record
        try:
            async with asyncio.timeout(self._stop_timeout_s):
                status = await actor.stop()
        except (TimeoutError, ActorLost) as exc:
            _log.warning("session %s did not stop by itself (%s); its actor is ended",
                         record.id, describe_error(exc), extra={"session_id": record.id})
            self._finish(entry, SessionState.STOPPED, None, None)
            if entry.task is not None:
                entry.task.cancel()
            self._release(entry)
            return record
        self._take_status(entry, status)
        record.ended_at = record.ended_at or self._clock()
        return record

    async def shutdown(self) -> None:
        """Stops every session and every node actor (before Ray goes down, so no Chromium
        is left and every recording is flushed)."""
        await self.started()
        self._closed = True
        spares = await self._spares.close()
        await asyncio.gather(*(self.stop(i) for i in list(self._entries)),
                             *(asyncio.wait_for(s.actor.stop(), self._stop_timeout_s)
                               for s in spares),
                             return_exceptions=True)
        for spare in spares:
            spare.actor.kill()
        await asyncio.gather(*(asyncio.wait_for(s.close_all(), _CALL_TIMEOUT_S)
                               for s in self._nodes.streamers().values()),
                             *(asyncio.wait_for(b.close(), _CALL_TIMEOUT_S)
                               for b in self._nodes.browsers()),
                             return_exceptions=True)
        await self._nodes.close()
        self._nodes.release_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._records.flush()

    # -- background work ----------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    _later = _spawn

    def _save(self, record: SessionRecord) -> None:
        self._records.changed(record)

    async def _save_records(self) -> None:
        while True:
            await asyncio.sleep(SAVE_EVERY_S)
            ended = [e.record for e in self._entries.values()
                     if e.record.state.ended and (e.task is None or e.task.done())]
            for session_id in await self._records.forget_oldest(ended):
                self._entries.pop(session_id, None)
            await self._records.flush()

    async def _report_metrics(self) -> None:
        while self._metrics is not None:
            counts = {str(state): 0 for state in SessionState}
            for entry in self._entries.values():
                counts[str(entry.record.state)] += 1
            self._metrics.report(counts, len(self._queued()))
            await asyncio.sleep(_METRICS_EVERY_S)

    async def _watch_idle(self) -> None:
        while True:
            await asyncio.sleep(self._idle_check_every_s)
            viewers: dict[str, int] = {}
            for streamer in self._nodes.streamers().values():
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(_CALL_TIMEOUT_S):
                        viewers |= await streamer.viewers()
            now = self._clock()
            for entry in list(self._entries.values()):
                record = entry.record
                if record.state.ended or entry.stopping:
                    self._idle.forget(record.id)
                    continue
                watched = viewers.get(record.id, 0)
                if not watched and record.state is SessionState.RUNNING and entry.connected:
                    await self.describe(record.id)  # has its workflow finished?
                own = record.spec.idle_timeout_s
                # Paused runs no step either: one nobody watches is stopped as an idle one.
                idle = record.state in (SessionState.IDLE, SessionState.PAUSED)
                if self._idle.expired(record.id, now, idle=idle, viewers=watched,
                                      own_timeout_s=own):
                    _log.info("session %s stopped after %.0f s idle with no viewer", record.id,
                              self._idle.timeout_for(own), extra={"session_id": record.id})
                    self._spawn(self.stop(record.id), f"idle-stop:{record.id}")


__all__ = ["STOP_TIMEOUT_S", "Described", "PoolNode", "RegistryReport", "SessionActor",
           "SessionActors", "SessionRegistry"]
