"""The Ray side of the control plane: the registry's Protocols (pipeline/registry.py,
pipeline/nodes.py) implemented over Ray actors, and its records kept in the GCS.

Every actor here is detached and named, so it outlives the registry that made it and a
restarted registry finds it by name: `session:<id>` (a browser slot each, spread over the
nodes), `streamer:<node id>` and `browser:<node id>` (pinned to their node; Ray restarts
them there when their process dies). Ray's errors are translated here: a session actor
that died raises ActorLost from every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

import ray
from ray.exceptions import ActorDiedError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pipeline.actors import BrowserHostActor, BrowserSessionActor, StreamerActor
from pipeline.config import Settings
from pipeline.errors import ActorLost, describe_error
from pipeline.kv_records import KVRecords
from pipeline.models import (
    Checkpoint,
    RecordingInfo,
    SessionRecord,
    SessionSpec,
    SessionStatus,
    StreamStats,
)
from pipeline.recording_index import IndexUpdate
from pipeline.registry import PoolNode
from pipeline.steps import Step
from pipeline.streamer import StreamRef

_log = logging.getLogger(__name__)
_NODES_FRESH_S = 1.0
_NODES_WAIT_S = 5.0  # for a view the caller cannot do without
SESSION_PREFIX = "session:"


class RaySessionActor:
    """A SessionActor over a `session:<id>` actor handle."""

    def __init__(self, handle: Any, name: str, node_id: str) -> None:
        self.handle, self._name, self._node_id = handle, name, node_id

    @property
    def name(self) -> str:
        return self._name

    @property
    def node_id(self) -> str:
        return self._node_id

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self.handle, method).remote(*args)
        except RayActorError as exc:
            raise ActorLost(f"session actor {self._name}", describe_error(exc)) from exc

    async def connect(self, stream: StreamRef, host: Any) -> None:
        await self._call("connect", stream, host)

    async def warm_up(self) -> None:
        await self._call("warm_up")

    async def start(self, spec: SessionSpec, resume: Checkpoint | None) -> SessionStatus:
        return await self._call("start", spec, resume)

    async def wait_stopped(self) -> SessionStatus:
        return await self._call("wait_stopped")

    async def stop(self) -> SessionStatus:
        return await self._call("stop")

    async def status(self) -> SessionStatus:
        return await self._call("status")

    async def pause(self, by: str) -> SessionStatus:
        return await self._call("pause", by)

    async def resume(self, by: str) -> SessionStatus:
        return await self._call("resume", by)

    async def add_steps(self, steps: list[Step], by: str) -> SessionStatus:
        return await self._call("add_steps", steps, by)

    async def reconnect(self, stream: StreamRef) -> None:
        await self._call("reconnect", stream)

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            ray.kill(self.handle)


class _Nodes:
    """ray.nodes(), at most about a second old.

    It is a GCS call, and a GCS call blocks its caller until the GCS answers: while the
    head's GCS restarts, the registry's event loop would stand still for the whole outage
    (every API call a 503 after its deadline, no supervision). So it runs in a thread of its
    own, one at a time, and the view it last gave stands meanwhile: a GCS that does not
    answer has lost no node.
    """

    def __init__(self) -> None:
        self._at = 0.0
        self._nodes: list[PoolNode] | None = None
        self._refreshing = threading.Lock()

    def get(self) -> list[PoolNode]:
        if self._nodes is None:
            self._refresh(wait_s=_NODES_WAIT_S)  # the registry is starting: the GCS answers
        elif time.monotonic() - self._at > _NODES_FRESH_S and not self._refreshing.locked():
            threading.Thread(target=self._refresh, name="ray-nodes", daemon=True).start()
        return self._nodes or []

    def alive(self, node_id: str) -> bool:
        nodes = self.get()
        if not any(n.node_id == node_id for n in nodes):
            # A node newer than the view (an actor was just placed there, so the GCS
            # answers): ask now rather than take it for lost.
            self._refresh(wait_s=_NODES_WAIT_S)
            nodes = self._nodes or []
        return any(n.node_id == node_id and n.alive for n in nodes)

    def _refresh(self, wait_s: float = 0.0) -> None:
        if not self._refreshing.acquire(timeout=wait_s):
            return
        try:
            self._nodes = [PoolNode(node_id=n["NodeID"], address=n["NodeManagerAddress"],
                                    alive=bool(n["Alive"]),
                                    slots=int(n["Resources"].get("browser", 0)))
                           for n in ray.nodes()]
            self._at = time.monotonic()
        except Exception as exc:
            _log.warning("the cluster's nodes could not be listed: %s", describe_error(exc))
        finally:
            self._refreshing.release()


class RayPlacement:
    """SessionActors over Ray: each session actor takes one unit of the `browser` resource,
    so Ray places it where a slot is free, spread over the nodes, and holds it while none is."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._nodes = _Nodes()

    def _create(self, session_id: str, name: str) -> tuple[Any, str]:
        options = {"namespace": self._settings.namespace, "lifetime": "detached",
                   "num_cpus": 0, "resources": {"browser": 1}, "max_concurrency": 1_000,
                   "max_restarts": 0, "scheduling_strategy": "SPREAD"}
        try:
            return ray.remote(BrowserSessionActor).options(name=name, **options).remote(
                session_id, self._settings), name
        except ValueError:  # the name is still held by an actor on its way out
            name = f"{name}~{time.monotonic_ns() % 1_000_000}"
            return ray.remote(BrowserSessionActor).options(name=name, **options).remote(
                session_id, self._settings), name

    async def place(self, session_id: str, name: str) -> RaySessionActor:
        # Creating a named actor waits for the GCS to register the name: in a thread, so a
        # GCS that is restarting holds up this session only, not the registry.
        creating = asyncio.ensure_future(asyncio.to_thread(self._create, session_id, name))
        try:
            handle, name = await asyncio.shield(creating)
        except asyncio.CancelledError:
            creating.add_done_callback(_kill_created)
            raise
        try:
            # Resolves once Ray found a browser slot: the session is placed.
            node_id = await handle.node_id.remote()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                ray.kill(handle)
            if isinstance(exc, RayActorError):  # placed on a node that is being lost
                raise ActorLost(f"session actor {name}", describe_error(exc)) from exc
            raise
        return RaySessionActor(handle, name, node_id)

    def adopt(self, name: str, node_id: str | None) -> RaySessionActor | None:
        try:
            handle = ray.get_actor(name, namespace=self._settings.namespace)
        except ValueError:
            return None
        return RaySessionActor(handle, name, node_id or "")

    def names(self) -> list[str]:
        return [n for n in ray.util.list_named_actors() if n.startswith(SESSION_PREFIX)]

    def kill(self, name: str) -> None:
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(name, namespace=self._settings.namespace))

    def nodes(self) -> list[PoolNode]:
        return self._nodes.get()

    def node_alive(self, node_id: str) -> bool:
        return self._nodes.alive(node_id)


def _kill_created(creating: asyncio.Future[tuple[Any, str]]) -> None:
    """Ends an actor whose placement was cancelled while it was being created."""
    if creating.cancelled() or creating.exception() is not None:
        return
    handle, _ = creating.result()
    with contextlib.suppress(Exception):
        ray.kill(handle)


class _RayNodeActor:
    """What NodeActors asks of either node actor (pipeline/nodes.py, NodeActor)."""

    what = "a node actor"

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def instance(self) -> str:
        try:
            return await self.handle.instance.remote()
        except ActorDiedError as exc:  # dead for good; ActorUnavailableError: restarting
            raise ActorLost(self.what, describe_error(exc)) from exc

    def release(self) -> None:
        with contextlib.suppress(Exception):
            ray.kill(self.handle, no_restart=True)


class RayStreamerClient(_RayNodeActor):
    """A StreamerClient over a `streamer:<node id>` actor handle."""

    what = "a streamer actor"

    def ref(self, session_id: str, epoch: int, node_id: str) -> StreamRef:
        return StreamRef(self.handle, session_id, epoch, node_id)

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self.handle, method).remote(*args)
        except RayActorError as exc:  # with its node, or while Ray restarts it
            raise ActorLost(self.what, describe_error(exc)) from exc

    async def open(self, session_id: str, epoch: int, record: bool = True,
                   name: str | None = None) -> None:
        await self._call("open", session_id, epoch, record, name)

    async def drop(self, session_id: str) -> None:
        await self._call("drop", session_id)

    async def stats(self, session_id: str) -> StreamStats:
        return await self._call("stats", session_id)

    async def streams(self) -> dict[str, int]:
        return await self._call("streams")

    async def viewers(self) -> dict[str, int]:
        return await self._call("viewers")

    async def close_all(self) -> None:
        await self._call("close_all")

    async def recordings(self) -> list[RecordingInfo]:
        return await self._call("recordings")

    async def recording(self, recording_id: str) -> RecordingInfo:
        return await self._call("recording", recording_id)

    async def delete_recording(self, recording_id: str) -> None:
        await self._call("delete_recording", recording_id)

    async def recording_indexes(self, known: dict[str, str]) -> IndexUpdate:
        return await self._call("recording_indexes", known)

    async def has_asset(self, asset_id: str) -> bool:
        return await self._call("has_asset", asset_id)


class RayBrowserHostClient(_RayNodeActor):
    """A BrowserHostClient over a `browser:<node id>` actor handle."""

    what = "a browser host actor"

    async def close(self) -> None:
        await self.handle.close.remote()


class RayNodeActorFactory:
    """Makes (or finds, after a registry restart) each node's streamer and browser host."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._nodes = _Nodes()

    def _options(self, name: str, node_id: str, concurrency: int) -> dict[str, Any]:
        return {"name": name, "namespace": self._settings.namespace, "get_if_exists": True,
                "lifetime": "detached", "num_cpus": 0, "max_concurrency": concurrency,
                "max_restarts": -1,
                "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False)}

    def streamer(self, node_id: str) -> RayStreamerClient:
        return RayStreamerClient(ray.remote(StreamerActor).options(
            **self._options(f"streamer:{node_id}", node_id, 10_000)).remote(self._settings))

    def browser(self, node_id: str) -> RayBrowserHostClient:
        return RayBrowserHostClient(ray.remote(BrowserHostActor).options(
            **self._options(f"browser:{node_id}", node_id, 1_000)).remote(self._settings))

    def node_alive(self, node_id: str) -> bool:
        return self._nodes.alive(node_id)

    def existing(self) -> list[str]:
        nodes = set()
        for name in ray.util.list_named_actors():
            kind, _, node_id = name.partition(":")
            if kind in ("streamer", "browser") and node_id:
                nodes.add(node_id)
        return sorted(nodes)


def kv_record_store(namespace: str) -> KVRecords[SessionRecord]:
    """Session records in the GCS's key-value store, which outlives the registry actor."""
    return KVRecords(namespace, SESSION_PREFIX, SessionRecord, "session record")


__all__ = ["RayBrowserHostClient", "RayNodeActorFactory", "RayPlacement", "RaySessionActor",
           "RayStreamerClient", "kv_record_store"]
