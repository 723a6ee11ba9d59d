"""NodeRecordings: the recordings of every node, found by asking each node's streamer.

Each node stores the recordings of the sessions it streamed (pipeline/recording.py), so
listing, finding and deleting one asks every live node that runs sessions; a streamer
is made where none runs yet, as recordings outlive the registry and the streamer that
wrote them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pipeline.errors import RecordingInProgress, RecordingNotFound, describe_error, unwrap
from pipeline.models import RecordingInfo
from pipeline.nodes import NodeActors, StreamerClient
from pipeline.registry import SessionActors

_log = logging.getLogger(__name__)
_CALL_TIMEOUT_S = 5.0


class NodeRecordings:
    def __init__(self, nodes: NodeActors, pool: SessionActors) -> None:
        self._nodes = nodes
        self._pool = pool

    async def list(self) -> list[RecordingInfo]:
        """Every node's recordings, newest first."""
        found = [info for _, listed in await self._ask("recordings")
                 if not isinstance(listed, BaseException) for info in listed]
        return sorted(found, key=lambda r: r.created_at, reverse=True)

    async def info(self, recording_id: str) -> RecordingInfo:
        info, _ = await self._find(recording_id)
        return info

    async def streamer(self, recording_id: str) -> Any:
        """The handle of the streamer actor that stores it, to read its frames from."""
        _, streamer = await self._find(recording_id)
        return streamer.handle

    async def delete(self, recording_id: str) -> None:
        """Deletes the recording wherever it is stored."""
        answers = await self._ask("delete_recording", recording_id)
        errors = [unwrap(a) for _, a in answers if isinstance(a, BaseException)]
        if any(isinstance(e, RecordingInProgress) for e in errors):
            raise RecordingInProgress(recording_id)
        if len(errors) == len(answers):
            raise RecordingNotFound(recording_id)

    async def _find(self, recording_id: str) -> tuple[RecordingInfo, StreamerClient]:
        for streamer, info in await self._ask("recording", recording_id):
            if isinstance(info, RecordingInfo):
                return info, streamer
        raise RecordingNotFound(recording_id)

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
