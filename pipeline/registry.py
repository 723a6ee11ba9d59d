"""SessionRegistry: the named actor that creates, knows and stops every session.

It owns each session's actor, `session:<id>` (holding a `browser` slot), and two
actors per node that the node's sessions share: `streamer:<node id>`, which keeps
every session's stream (a Streamer), and `browser:<node id>`, the shared Chromium.
The Ray dashboard shows them under their names, and they live as long as the
registry. The `browser` resource is the pool: Ray places session actors where a slot
is free (spread across nodes) and holds them while none is; the registry reports that
queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pipeline.actors import BrowserHostActor, BrowserSessionActor, StreamerActor
from pipeline.config import Settings
from pipeline.errors import (
    PoolFull,
    RecordingInProgress,
    RecordingNotFound,
    SessionNotFound,
    StreamUnavailable,
)
from pipeline.logs import configure_logging
from pipeline.metrics import RegistryMetrics
from pipeline.models import (
    NodeSlots,
    PoolStatus,
    RecordingInfo,
    SessionRecord,
    SessionSpec,
    SessionState,
    SessionStatus,
    StreamStats,
)
from pipeline.streamer import StreamRef

REGISTRY_NAME = "registry"
_STATUS_TIMEOUT_S = 5.0
_METRICS_EVERY_S = 5.0
_log = logging.getLogger(__name__)


class _NodeLost(Exception):
    pass


class _Entry:
    __slots__ = ("record", "session", "streamer", "ready", "task", "last_status", "placed",
                 "stopping")

    def __init__(self, record: SessionRecord) -> None:
        self.record = record
        self.session: Any = None
        self.streamer: Any = None
        self.ready = asyncio.Event()  # set once both actors exist (or the session ended)
        self.task: asyncio.Task[None] | None = None
        self.last_status: SessionStatus | None = None
        self.placed = False
        self.stopping = False


class SessionRegistry:
    def __init__(self, settings: Settings) -> None:
        configure_logging()
        self._settings = settings
        self._entries: dict[str, _Entry] = {}
        self._metrics = RegistryMetrics()
        self._metrics_task: asyncio.Task[None] | None = None
        self._spares: list[_Entry] = []  # placed, Chromium running, no spec yet
        self._warming: asyncio.Task[None] | None = None
        self._hosts: dict[str, Any] = {}  # node id -> its BrowserHost actor
        self._line = asyncio.Lock()  # sessions waiting for a slot, first come first placed
        self._streamers: dict[str, Any] = {}  # node id -> its Streamer actor

    # -- creating and running sessions -------------------------------------------------------

    async def create(self, spec: SessionSpec) -> SessionRecord:
        if self._metrics_task is None:  # the actor's event loop runs only from here on
            self._metrics_task = asyncio.create_task(self._report_metrics())
        if self._settings.when_full == "refuse" and not self._spares:
            total, used = self._slots_total(), self._slots_wanted()
            if used >= total:
                raise PoolFull(used, total)
        spare = self._spares.pop(0) if self._spares else None
        session_id = spare.record.id if spare else secrets.token_hex(6)
        record = SessionRecord(id=session_id, spec=spec, state=SessionState.PENDING,
                               created_at=time.time())
        entry = _Entry(record)
        if spare is not None:  # Chromium is already running beside its streamer
            entry.session, entry.streamer, entry.placed = spare.session, spare.streamer, True
            record.node_id = spare.record.node_id
        self._entries[session_id] = entry
        entry.task = asyncio.create_task(self._run(entry), name=f"run:{session_id}")
        record.queue_position = self._queue_position(entry)
        _log.info("session %s created (warm: %s, queue position %s)", session_id,
                  spare is not None, record.queue_position, extra={"session_id": session_id})
        self._keep_warm()
        return record

    async def _run(self, entry: _Entry) -> None:
        record = entry.record
        try:
            while True:
                try:
                    await self._run_once(entry)
                    break
                except _NodeLost as exc:
                    if (entry.stopping or self._settings.on_node_loss == "fail"
                            or record.restarts >= self._settings.max_restarts):
                        raise
                    record.restarts += 1
                    _log.warning("session %s lost its node (%s); restart %d", record.id, exc,
                                 record.restarts, extra={"session_id": record.id})
                    self._forget_actors(entry)
                    record.state, record.node_id = SessionState.PENDING, None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            record.ended_at = record.ended_at or time.time()
            if entry.stopping:
                # Stopped while being placed: the session refuses to be connected once
                # stopped, and stopped is what was asked for.
                record.state, record.error = SessionState.STOPPED, None
                _log.info("session %s stopped while starting (%s)", record.id,
                          type(exc).__name__, extra={"session_id": record.id})
                return
            record.state = SessionState.FAILED
            record.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            _log.error("session %s failed: %s", record.id, record.error,
                       extra={"session_id": record.id})
        finally:
            entry.ready.set()
            self._keep_warm()  # a slot may have come free
            if entry.session is not None:
                # Frees the browser slot. The streamer outlives its browser for a while so
                # viewers can drain it.
                with contextlib.suppress(Exception):
                    ray.kill(entry.session)
            if entry.streamer is not None:
                await asyncio.sleep(self._settings.ended_retention_s)
                streamer, entry.streamer = entry.streamer, None
                with contextlib.suppress(Exception):
                    await streamer.streamer.drop.remote(streamer.session_id)

    async def _run_once(self, entry: _Entry) -> None:
        record = entry.record
        try:
            if entry.session is None:
                await self._place(entry, suffix=f"#{record.restarts}" if record.restarts else "")
            record.queue_position = None
            record.state = SessionState.STARTING
            entry.ready.set()
            status: SessionStatus = await entry.session.start.remote(record.spec)
            record.state, record.error, entry.last_status = status.state, status.error, status
            if not status.state.ended:
                status = await entry.session.wait_stopped.remote()
        except RayActorError as exc:
            raise _NodeLost(str(exc).splitlines()[0]) from exc
        entry.last_status = status
        record.state, record.error, record.ended_at = status.state, status.error, time.time()

    async def _place(self, entry: _Entry, suffix: str = "") -> None:
        """Creates the session actor where Ray finds a browser slot, then its streamer on the
        same node, and connects them."""
        record, ns = entry.record, self._settings.namespace
        # Ray does not place actors that wait for the same resource in the order they
        # asked: when a slot frees, a session created a moment ago can take it before one
        # that has waited. Sessions that have to wait therefore line up here and ask Ray
        # one at a time.
        full = self._slots_wanted() + len(self._spares) > self._slots_total()
        async with self._line if full else contextlib.nullcontext():
            entry.session = ray.remote(BrowserSessionActor).options(
                name=f"session:{record.id}{suffix}", namespace=ns, num_cpus=0,
                resources={"browser": 1}, max_concurrency=1_000, scheduling_strategy="SPREAD",
            ).remote(record.id, self._settings)
            # Resolves once Ray found a browser slot: the session is placed.
            record.node_id = await entry.session.node_id.remote()
        entry.placed = True
        streamer = self._streamer(record.node_id)
        record.epoch = record.restarts
        await streamer.open.remote(record.id, record.epoch)
        entry.streamer = StreamRef(streamer, record.id, record.epoch, record.node_id)
        host = self._host(record.node_id) if self._settings.shared_browser else None
        await entry.session.connect.remote(entry.streamer, host)

    def _streamer(self, node_id: str) -> Any:
        """The node's Streamer actor, created on first use; this handle keeps it alive."""
        streamer = self._streamers.get(node_id)
        if streamer is None:
            streamer = ray.remote(StreamerActor).options(
                name=f"streamer:{node_id}", namespace=self._settings.namespace, num_cpus=0,
                max_concurrency=10_000,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(self._settings)
            self._streamers[node_id] = streamer
        return streamer

    def _host(self, node_id: str) -> Any:
        """The node's shared Chromium: its BrowserHost actor, created on first use. This
        handle is the one that keeps it alive (a looked-up handle would not), and Ray
        restarts it on the same node if its worker dies; it goes with its node."""
        host = self._hosts.get(node_id)
        if host is None:
            host = ray.remote(BrowserHostActor).options(
                name=f"browser:{node_id}", namespace=self._settings.namespace,
                num_cpus=0, max_concurrency=1_000, max_restarts=-1,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(self._settings)
            self._hosts[node_id] = host
        return host

    # -- warm browsers --------------------------------------------------------------------------

    async def keep_warm(self) -> int:
        """Starts warming browsers up to RRSTREAM_WARM_BROWSERS; returns how many are ready."""
        self._keep_warm()
        return len(self._spares)

    def _keep_warm(self) -> None:
        if self._warming is None or self._warming.done():
            self._warming = asyncio.create_task(self._warm(), name="warm")

    async def _warm(self) -> None:
        # A spare takes a browser slot, so only while no session waits for one.
        while (len(self._spares) < self._settings.warm_browsers and not self._queued()
               and self._slots_wanted() + len(self._spares) < self._slots_total()):
            spare = _Entry(SessionRecord(id=secrets.token_hex(6), spec=SessionSpec(demo=True),
                                         state=SessionState.PENDING, created_at=time.time()))
            try:
                await self._place(spare)
                await spare.session.warm_up.remote()
            except Exception as exc:
                _log.warning("warming a browser failed: %s", str(exc).splitlines()[0])
                self._forget_actors(spare)
                return
            self._spares.append(spare)

    def _forget_actors(self, entry: _Entry) -> None:
        if entry.session is not None:
            with contextlib.suppress(Exception):
                ray.kill(entry.session)
        if entry.streamer is not None:
            with contextlib.suppress(Exception):
                entry.streamer.streamer.drop.remote(entry.streamer.session_id)
        entry.session = entry.streamer = None
        entry.placed = False
        entry.ready.clear()

    # -- reading ------------------------------------------------------------------------------

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
            record = entry.record
            raise StreamUnavailable(session_id, str(record.state), record.error)
        return entry.streamer

    async def describe(self, session_id: str) -> tuple[SessionRecord, SessionStatus | None,
                                                       StreamStats | None]:
        """The record plus the live status of both actors (None where unreachable)."""
        entry = self._entry(session_id)
        status, stats = entry.last_status, None
        if entry.session is not None and entry.placed and not entry.record.state.ended:
            with contextlib.suppress(Exception):
                status = await asyncio.wait_for(entry.session.status.remote(),
                                                _STATUS_TIMEOUT_S)
                entry.last_status = status
                entry.record.state = status.state
        if entry.streamer is not None:
            with contextlib.suppress(Exception):
                ref = entry.streamer
                stats = await asyncio.wait_for(ref.streamer.stats.remote(ref.session_id),
                                               _STATUS_TIMEOUT_S)
        entry.record.queue_position = self._queue_position(entry)
        return entry.record, status, stats

    async def describe_all(self) -> list[tuple[SessionRecord, SessionStatus | None,
                                               StreamStats | None]]:
        return list(await asyncio.gather(*(self.describe(i) for i in list(self._entries))))

    async def pool(self) -> PoolStatus:
        """Nodes, their browser slots, the sessions on each, and the queue."""
        live = [e for e in self._entries.values() if not e.record.state.ended]
        nodes = []
        for node in ray.nodes():
            slots = int(node["Resources"].get("browser", 0)) if node["Alive"] else 0
            sessions = [e.record.id for e in live
                        if e.placed and e.record.node_id == node["NodeID"]]
            warm = sum(1 for e in self._spares if e.record.node_id == node["NodeID"])
            if slots or sessions or warm:
                nodes.append(NodeSlots(node_id=node["NodeID"], address=node["NodeManagerAddress"],
                                       alive=node["Alive"], slots_total=slots,
                                       slots_used=len(sessions) + warm, warm=warm,
                                       sessions=sessions))
        return PoolStatus(
            nodes=nodes,
            slots_total=sum(n.slots_total for n in nodes),
            slots_used=sum(1 for e in live if e.placed) + len(self._spares),
            queue=[e.record.id for e in self._queued()],
            when_full=self._settings.when_full,
        )

    def _queued(self) -> list[_Entry]:
        waiting = [e for e in self._entries.values() if not e.placed and not e.record.state.ended]
        return sorted(waiting, key=lambda e: e.record.created_at)

    def _queue_position(self, entry: _Entry) -> int | None:
        if entry.placed or entry.record.state.ended:
            return None
        return next((i + 1 for i, e in enumerate(self._queued()) if e is entry), None)

    def _slots_total(self) -> int:
        return int(ray.cluster_resources().get("browser", 0))

    def _slots_wanted(self) -> int:
        return sum(1 for e in self._entries.values() if not e.record.state.ended)

    # -- stopping -----------------------------------------------------------------------------

    async def stop(self, session_id: str) -> SessionRecord:
        """Idempotent: stopping an ended session returns its record."""
        entry = self._entry(session_id)
        record = entry.record
        entry.stopping = True
        if record.state.ended:
            return record
        if not entry.placed:
            if entry.task is not None:
                entry.task.cancel()
            self._forget_actors(entry)
            entry.ready.set()
            record.state, record.ended_at = SessionState.STOPPED, time.time()
            return record
        try:
            status = await entry.session.stop.remote()
        except RayActorError:
            return record  # its node went away meanwhile; _run records how it ended
        record.state, record.error, entry.last_status = status.state, status.error, status
        record.ended_at = record.ended_at or time.time()
        return record

    # -- recordings ---------------------------------------------------------------------------
    # Each node stores the recordings of the sessions it streamed; its Streamer serves them.

    async def recordings(self) -> list[RecordingInfo]:
        """Every node's recordings, newest first."""
        found = [info for _, listed in await self._ask_stream_hosts("recordings")
                 if not isinstance(listed, BaseException) for info in listed]
        return sorted(found, key=lambda r: r.created_at, reverse=True)

    async def recording(self, recording_id: str) -> RecordingInfo:
        info, _ = await self._find_recording(recording_id)
        return info

    async def recording_host(self, recording_id: str) -> Any:
        """The Streamer actor that stores the recording, to fetch its frames from."""
        _, host = await self._find_recording(recording_id)
        return host

    async def delete_recording(self, recording_id: str) -> None:
        """Deletes the recording wherever it is stored."""
        answers = await self._ask_stream_hosts("delete_recording", recording_id)
        errors = [a for _, a in answers if isinstance(a, BaseException)]
        if any(isinstance(e, RecordingInProgress) for e in errors):
            raise RecordingInProgress(recording_id)
        if len(errors) == len(answers):
            raise RecordingNotFound(recording_id)

    async def _find_recording(self, recording_id: str) -> tuple[RecordingInfo, Any]:
        for host, info in await self._ask_stream_hosts("recording", recording_id):
            if isinstance(info, RecordingInfo):
                return info, host
        raise RecordingNotFound(recording_id)

    async def _ask_stream_hosts(self, method: str,
                                *args: Any) -> list[tuple[Any, Any | BaseException]]:
        """Calls `method` on the Streamer of every live node that runs sessions (creating
        it where missing, as recordings outlive the registry that made them); each answer
        is a result or the error it raised. An unreachable node's error is logged."""
        for node in ray.nodes():
            if node["Alive"] and node["Resources"].get("browser", 0) > 0:
                self._streamer(node["NodeID"])
        hosts = list(self._streamers.values())
        answers = await asyncio.gather(
            *(asyncio.wait_for(getattr(h, method).remote(*args), _STATUS_TIMEOUT_S)
              for h in hosts),
            return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(
                    answer, RecordingNotFound | RecordingInProgress):
                _log.warning("a node's recordings are unreachable: %s",
                             str(answer).splitlines()[0] if str(answer) else type(answer))
        return list(zip(hosts, answers, strict=True))

    async def shutdown(self) -> None:
        """Stops every session (used before Ray goes down, so no Chromium is left)."""
        if self._warming is not None:
            self._warming.cancel()
        spares, self._spares = self._spares, []
        await asyncio.gather(*(self.stop(i) for i in list(self._entries)),
                             *(s.session.stop.remote() for s in spares),
                             return_exceptions=True)
        for spare in spares:
            self._forget_actors(spare)
        hosts, self._hosts = list(self._hosts.values()), {}
        await asyncio.gather(*(asyncio.wait_for(h.close.remote(), _STATUS_TIMEOUT_S)
                               for h in hosts), return_exceptions=True)
        for host in hosts:
            with contextlib.suppress(Exception):
                ray.kill(host)
        streamers, self._streamers = list(self._streamers.values()), {}
        for streamer in streamers:
            with contextlib.suppress(Exception):
                ray.kill(streamer)

    async def _report_metrics(self) -> None:
        while True:
            counts: dict[str, int] = {str(state): 0 for state in SessionState}
            for entry in self._entries.values():
                counts[str(entry.record.state)] += 1
            self._metrics.report(counts, len(self._queued()))
            await asyncio.sleep(_METRICS_EVERY_S)


def get_or_create_registry(settings: Settings) -> Any:
    """The registry actor, created detached on first use so it outlives gateway replicas,
    on the head node, which lives as long as the cluster."""
    return ray.remote(SessionRegistry).options(
        name=REGISTRY_NAME, namespace=settings.namespace, get_if_exists=True,
        lifetime="detached", num_cpus=0, max_concurrency=10_000,
        resources={"node:__internal_head__": 0.001},
    ).remote(settings)


__all__ = ["REGISTRY_NAME", "SessionRegistry", "get_or_create_registry"]
