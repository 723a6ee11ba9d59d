"""NodeRecordings: the registry's view of every recording, wherever it is stored.

With local stores each node keeps the recordings of the sessions it streamed
(pipeline/recording_store.py), so listing, finding and deleting one asks every live node
that runs sessions; a streamer is made where none runs yet, as recordings outlive the
registry and the streamer that wrote them. With a shared store (S3) the registry reads
it directly, and runs its retention (pipeline/retention.py), once for the cluster.
Assets (pipeline/asset_cache.py) are found the same way: in every node's cache, and in
the recordings of its local store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pipeline.errors import RecordingInProgress, RecordingNotFound, describe_error, unwrap
from pipeline.models import RecordingInfo
from pipeline.nodes import NodeActors, StreamerClient
from pipeline.recording_index import IndexUpdate
from pipeline.recording_store import RecordingStore
from pipeline.registry import SessionActors

_log = logging.getLogger(__name__)
_CALL_TIMEOUT_S = 5.0


class NodeRecordings:
    def __init__(self, nodes: NodeActors, pool: SessionActors,
                 shared: RecordingStore | None = None,
                 live: Callable[[], set[str]] = set) -> None:
        """`shared`: the cluster's one store, when it is not each node's own; `live`: the
        sessions still running (their recordings are still being written)."""
        self._nodes = nodes
        self._pool = pool
        self._shared = shared
        self._live = live

    async def list(self) -> list[RecordingInfo]:
        """Every recording, newest first, each once."""
        if self._shared is not None:
            return await asyncio.to_thread(self._shared.list)
        found: dict[str, RecordingInfo] = {}
        for _, listed in await self._ask("recordings"):
            if isinstance(listed, BaseException):
                continue
            for info in listed:  # a session restarted on another node is stored on both
                if info.id not in found or info.batches > found[info.id].batches:
                    found[info.id] = info
        return sorted(found.values(), key=lambda r: r.created_at, reverse=True)

    async def info(self, recording_id: str) -> RecordingInfo:
        if self._shared is not None:
            return await asyncio.to_thread(self._shared.info, recording_id)
        info, _ = await self._find(recording_id)
        return info

    async def streamer(self, recording_id: str) -> Any:
        """The handle of the streamer actor that stores it (a local store), to read its
        chunks from."""
        _, streamer = await self._find(recording_id)
        return streamer.handle

    async def indexes(self, known: dict[str, str]) -> IndexUpdate:
        """Every recording's search index version, and the indexes changed since `known`
        (a search's cache of them: pipeline/recording_index.py)."""
        if self._shared is not None:
            return await asyncio.to_thread(self._shared.index_update, known)
        update = IndexUpdate({}, {})
        for _, answer in await self._ask("recording_indexes", known):
            if isinstance(answer, IndexUpdate):
                update = update.merged(answer)
        return update

    async def asset_holder(self, asset_id: str) -> Any | None:
        """The handle of a streamer actor whose node has the asset (in its cache or a
        recording it stores), to read it from; None if no node has it."""
        for streamer, has in await self._ask("has_asset", asset_id):
            if has is True:
                return streamer.handle
        return None

    async def delete(self, recording_id: str) -> None:
        """Deletes the recording wherever it is stored."""
        if self._shared is not None:
            if recording_id in self._live():
                raise RecordingInProgress(recording_id)
            await asyncio.to_thread(self._shared.delete, recording_id)
            return
        answers = await self._ask("delete_recording", recording_id)
        errors = [unwrap(a) for _, a in answers if isinstance(a, BaseException)]
        if any(isinstance(e, RecordingInProgress) for e in errors):
            raise RecordingInProgress(recording_id)
        if len(errors) == len(answers):
            raise RecordingNotFound(recording_id)

    async def _find(self, recording_id: str) -> tuple[RecordingInfo, StreamerClient]:
        best: tuple[RecordingInfo, StreamerClient] | None = None
        for streamer, info in await self._ask("recording", recording_id):
            if isinstance(info, RecordingInfo) and (best is None
                                                   or info.batches > best[0].batches):
                best = (info, streamer)
        if best is None:
            raise RecordingNotFound(recording_id)
        return best

    async def _ask(self, method: str,
                   *args: Any) -> list[tuple[StreamerClient, Any | BaseException]]:
        """Calls `method` on the streamer of every live node that runs sessions; each answer
        is a result or the error it raised. An unreachable node's error is logged."""
        for node in self._pool.nodes():
            if node.alive and node.slots > 0:
                self._nodes.streamer(node.node_id)
        streamers = list(self._nodes.streamers().values())
        answers = await asyncio.gather(
            *(asyncio.wait_for(getattr(s, method)(*args), _CALL_TIMEOUT_S) for s in streamers),
            return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(
                    unwrap(answer), RecordingNotFound | RecordingInProgress):
                _log.warning("a node's recordings are unreachable: %s", describe_error(answer))
        return list(zip(streamers, answers, strict=True))


__all__ = ["NodeRecordings"]
