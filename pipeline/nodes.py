"""NodeActors: the supervisor of each node's shared actors, the streamer and the browser host.

Every node that runs sessions has two actors its sessions share: `streamer:<node id>`
(pipeline/streamer.py) and `browser:<node id>` (pipeline/browser_host.py). This class
is the one place that creates them, checks them once a second, notices that one died or
was restarted, and recreates one that is dead for good. A handle to a dead actor is never
reused: a dead one is replaced by a new actor under the same name.

Ray restarts both actors on their node when their process dies (`max_restarts=-1`); a
restarted streamer has lost every stream it held. Its `instance()` changes on every start,
so a health check that sees a new instance calls `on_streamer_restart(node_id)`, and the
registry opens each of that node's sessions a new stream (a new epoch, after a reset with
reason `restart`). A restarted browser host needs nothing from here: its Chromium died with
it, and each session relaunches it through `endpoint()` as after any browser crash.

The Ray side sits behind `NodeActorFactory`, so unit tests drive the supervision with fakes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.errors import ActorLost, describe_error
from pipeline.models import RecordingInfo, StreamStats
from pipeline.recording_index import IndexUpdate
from pipeline.streamer import StreamRef

_log = logging.getLogger(__name__)
CHECK_EVERY_S = 1.0
_CHECK_TIMEOUT_S = 3.0


class ActorState(enum.StrEnum):
    NOT_CREATED = "not created"
    ALIVE = "alive"
    RESTARTING = "restarting"  # not answering: Ray is restarting it, or it is overloaded
    DEAD = "dead"  # gone for good (its node died); replaced on next use while the node lives


class NodeActor(Protocol):
    """What supervision needs of either node actor."""

    async def instance(self) -> str:
        """Who answers (a new value after every restart). Raises ActorLost when the actor is
        dead for good, any other error while it does not answer."""

    def release(self) -> None:
        """Stops the actor for good (shutdown)."""


class StreamerClient(NodeActor, Protocol):
    """The registry's calls to a node's streamer actor (pipeline/streamer.py)."""

    def ref(self, session_id: str, epoch: int, node_id: str) -> StreamRef: ...

    async def open(self, session_id: str, epoch: int, record: bool = True,
                   name: str | None = None) -> None:
        """Opens the session's stream in `epoch`; `record` False stores nothing of it;
        `name` (the session's) goes into its recording's metadata."""

    async def drop(self, session_id: str) -> None: ...

    async def stats(self, session_id: str) -> StreamStats: ...

    async def streams(self) -> dict[str, int]:
        """Session id -> epoch of every stream it holds."""

    async def viewers(self) -> dict[str, int]:
        """Session id -> viewers the gateway replicas reported."""

    async def close_all(self) -> None: ...

    # The recordings stored on its node (pipeline/node_recordings.py).

    @property
    def handle(self) -> Any:
        """The actor handle, for the gateway to read a recording's frames from."""

    async def recordings(self) -> list[RecordingInfo]: ...

    async def recording(self, recording_id: str) -> RecordingInfo: ...

    async def delete_recording(self, recording_id: str) -> None: ...

    async def recording_indexes(self, known: dict[str, str]) -> IndexUpdate: ...

    async def has_asset(self, asset_id: str) -> bool:
        """Its node's asset cache, or a recording in its store, has the asset."""


class BrowserHostClient(NodeActor, Protocol):
    """The registry's calls to a node's browser host actor (pipeline/browser_host.py)."""

    @property
    def handle(self) -> Any:
        """The actor handle, handed to the node's session actors."""

    async def close(self) -> None: ...


class NodeActorFactory(Protocol):
    """Makes the per-node actors (Ray in production: pipeline/cluster.py)."""

    def streamer(self, node_id: str) -> StreamerClient:
        """The node's streamer actor: the live one of that name, else a new one."""

    def browser(self, node_id: str) -> BrowserHostClient:
        """The node's browser host actor: the live one of that name, else a new one."""

    def node_alive(self, node_id: str) -> bool: ...

    def existing(self) -> list[str]:
        """Nodes whose streamer or browser host actor already runs (a restarted registry
        takes them over)."""


@dataclass(slots=True)
class _Watched:
    actor: NodeActor
    state: ActorState = ActorState.RESTARTING  # until its first answer
    instance: str | None = None


@dataclass(slots=True)
class _Node:
    streamer: _Watched | None = None
    browser: _Watched | None = None
    lost: bool = False  # the node itself is gone
    checking: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True, slots=True)
class NodeActorStates:
    streamer: ActorState
    browser: ActorState


class NodeActors:
    def __init__(self, factory: NodeActorFactory,
                 on_streamer_restart: Callable[[str], Awaitable[None]],
                 on_restart: Callable[[str], None] | None = None,
                 check_every_s: float = CHECK_EVERY_S) -> None:
        """`on_streamer_restart(node_id)`: the node's streamer came back without its streams.
        `on_restart(kind)`: counts a restart (`streamer` or `browser_host`) in metrics."""
        self._factory = factory
        self._on_streamer_restart = on_streamer_restart
        self._on_restart = on_restart or (lambda kind: None)
        self._check_every_s = check_every_s
        self._nodes: dict[str, _Node] = {}
        self._task: asyncio.Task[None] | None = None
        self._reattaching: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="node-actors")

    async def close(self) -> None:
        """Stops watching (the actors stay: see `release_all`)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for pending in list(self._reattaching):
            pending.cancel()
        await asyncio.gather(*self._reattaching, return_exceptions=True)

    def adopt(self) -> None:
        """Takes over the node actors a previous registry left, so they are watched, and
        closed at shutdown, like the ones made here."""
        for node_id in self._factory.existing():
            self.streamer(node_id)
            self.browser(node_id)

    def streamer(self, node_id: str) -> StreamerClient:
        """The node's streamer, created on first use (and anew when it is dead for good)."""
        node = self._node(node_id)
        if node.streamer is None or node.streamer.state is ActorState.DEAD:
            node.streamer = _Watched(self._factory.streamer(node_id))
        return node.streamer.actor  # type: ignore[return-value]

    def browser(self, node_id: str) -> BrowserHostClient:
        """The node's browser host, created on first use (and anew when dead for good)."""
        node = self._node(node_id)
        if node.browser is None or node.browser.state is ActorState.DEAD:
            node.browser = _Watched(self._factory.browser(node_id))
        return node.browser.actor  # type: ignore[return-value]

    def streamers(self) -> dict[str, StreamerClient]:
        """Node id -> streamer, for every node whose streamer is not dead."""
        return {node_id: node.streamer.actor  # type: ignore[misc]
                for node_id, node in self._nodes.items()
                if node.streamer is not None and node.streamer.state is not ActorState.DEAD}

    def browsers(self) -> list[BrowserHostClient]:
        return [node.browser.actor for node in self._nodes.values()  # type: ignore[misc]
                if node.browser is not None and node.browser.state is not ActorState.DEAD]

    def states(self, node_id: str) -> NodeActorStates:
        node = self._nodes.get(node_id)

        def state(watched: _Watched | None) -> ActorState:
            return ActorState.NOT_CREATED if watched is None else watched.state

        if node is None:
            return NodeActorStates(ActorState.NOT_CREATED, ActorState.NOT_CREATED)
        return NodeActorStates(state(node.streamer), state(node.browser))

    def streamer_instance(self, node_id: str) -> str | None:
        """The streamer instance last seen answering on the node (None: not seen yet)."""
        node = self._nodes.get(node_id)
        return node.streamer.instance if node is not None and node.streamer else None

    async def check(self, node_id: str) -> None:
        """Checks the node's actors now (a session just failed to reach its streamer)."""
        node = self._nodes.get(node_id)
        if node is not None:
            await self._check(node_id, node)

    async def wait_streamer(self, node_id: str, timeout_s: float) -> str:
        """Waits until the node's streamer answers; returns its instance. Raises TimeoutError,
        or ActorLost when the node is lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self.streamer(node_id)  # recreated if it is dead for good
            node = self._nodes[node_id]
            await self._check(node_id, node)
            if node.lost:
                raise ActorLost(f"the streamer of node {node_id[:12]}", "its node is gone")
            assert node.streamer is not None
            if node.streamer.state is ActorState.ALIVE and node.streamer.instance:
                return node.streamer.instance
            if loop.time() >= deadline:
                raise TimeoutError(f"the streamer of node {node_id[:12]} did not answer "
                                   f"within {timeout_s:g} s")
            await asyncio.sleep(0.1)

    def release_all(self) -> None:
        """Stops every node actor for good (the stack shuts down)."""
        for node in self._nodes.values():
            for watched in (node.streamer, node.browser):
                if watched is not None:
                    watched.actor.release()
                    watched.state = ActorState.DEAD
        self._nodes.clear()

    # -- checking ----------------------------------------------------------------------------

    def _node(self, node_id: str) -> _Node:
        node = self._nodes.get(node_id)
        if node is None or node.lost:
            node = self._nodes[node_id] = _Node()
        return node

    async def _watch(self) -> None:
        while True:
            await asyncio.gather(*(self._check(node_id, node)
                                   for node_id, node in list(self._nodes.items())),
                                 return_exceptions=True)
            await asyncio.sleep(self._check_every_s)

    async def _check(self, node_id: str, node: _Node) -> None:
        if node.lost:
            return
        async with node.checking:
            if not self._factory.node_alive(node_id):
                node.lost = True
                for watched in (node.streamer, node.browser):
                    if watched is not None:
                        watched.state = ActorState.DEAD
                return
            if node.streamer is not None:
                if await self._check_one(node.streamer, "streamer", node_id):
                    task = asyncio.create_task(self._on_streamer_restart(node_id),
                                               name=f"reattach:{node_id[:12]}")
                    self._reattaching.add(task)
                    task.add_done_callback(self._reattached)
            if node.browser is not None:
                await self._check_one(node.browser, "browser_host", node_id)

    async def _check_one(self, watched: _Watched, kind: str, node_id: str) -> bool:
        """Updates `watched` from one health check; True when it came back restarted."""
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT_S):
                instance = await watched.actor.instance()
        except ActorLost:
            if watched.state is not ActorState.DEAD:
                _log.warning("the %s of node %s is dead; a new one is made on next use",
                             kind.replace("_", " "), node_id[:12])
            watched.state = ActorState.DEAD
            return False
        except Exception as exc:
            if watched.state is ActorState.ALIVE:
                _log.warning("the %s of node %s does not answer (%s)", kind.replace("_", " "),
                             node_id[:12], describe_error(exc))
            watched.state = ActorState.RESTARTING
            return False
        restarted = watched.instance is not None and instance != watched.instance
        watched.instance, watched.state = instance, ActorState.ALIVE
        if restarted:
            _log.warning("the %s of node %s was restarted", kind.replace("_", " "), node_id[:12])
            self._on_restart(kind)
        return restarted and kind == "streamer"

    def _reattached(self, task: asyncio.Task[None]) -> None:
        self._reattaching.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("reopening the streams of a restarted streamer failed: %s",
                       describe_error(task.exception()))


__all__ = ["ActorState", "BrowserHostClient", "NodeActor", "NodeActorFactory",
           "NodeActorStates", "NodeActors", "StreamerClient"]
