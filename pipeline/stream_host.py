"""StreamHost: the streams of every session on one node, in one actor.

A streamer actor per session would cost a Python worker process (~60 MB) for work
that takes a few per cent of a core: numbering, compressing and buffering batches.
One StreamHost per node keeps an EventStreamer per session instead, each with its own
sequence numbers, codec context and buffer, exactly as a streamer of its own would.

It also holds the node's recordings (pipeline/recording.py): every stream writes its
session's recording as it goes, and the registry asks each node's StreamHost for the
recordings it stores.

Runs as the Ray actor `streamer:<node id>`. Callers hold a `StreamHandle`, which names
its session in every call and is used like an actor handle of that session's streamer:
`await handle.read.remote(after_seq, timeout_s, reader, viewers)`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from pipeline.config import Settings
from pipeline.errors import RecordingInProgress, RecordingNotFound, StreamUnavailable
from pipeline.metrics import StreamMetrics
from pipeline.models import RecordingInfo, StreamStats
from pipeline.protocol import PageBatch
from pipeline.recording import RecordingStore
from pipeline.streamer import EventStreamer, ReadResult


class StreamHost:
    def __init__(self, settings: Settings, metrics: StreamMetrics | None = None) -> None:
        self._settings = settings
        self._metrics = metrics
        self._streams: dict[str, EventStreamer] = {}
        self._recordings = RecordingStore.from_settings(settings)

    def open(self, session_id: str, first_seq: int = 1) -> None:
        """Starts a session's stream; `first_seq` continues the numbering of a session
        restarted after its node was lost. Reopening replaces the stream."""
        earlier = self._streams.get(session_id)
        if earlier is not None:
            # Its readers move on to the new stream; its recording is finished first, so
            # the new one appends after everything the earlier one wrote.
            earlier.finish_recording()
        recording = (self._recordings.writer(session_id, self._settings.codec)
                     if self._recordings is not None else None)
        self._streams[session_id] = EventStreamer(session_id, self._settings, first_seq,
                                                  metrics=self._metrics, recording=recording)

    async def push(self, session_id: str, batches: list[PageBatch]) -> int:
        return await self._stream(session_id).push(batches)

    async def read(self, session_id: str, after_seq: int | None, timeout_s: float = 10.0,
                   reader: str | None = None, viewers: int = 0) -> ReadResult:
        return await self._stream(session_id).read(after_seq, timeout_s, reader, viewers)

    def codec(self, session_id: str) -> str:
        return self._stream(session_id).codec()

    def report_viewers(self, session_id: str, reader: str, viewers: int) -> None:
        self._stream(session_id).report_viewers(reader, viewers)

    def stats(self, session_id: str) -> StreamStats:
        return self._stream(session_id).stats()

    def close(self, session_id: str) -> None:
        """No more batches for this session; its readers drain the buffer and see `ended`."""
        self._stream(session_id).close()

    def drop(self, session_id: str) -> None:
        """Forgets a session's stream (its retention is over); idempotent."""
        stream = self._streams.pop(session_id, None)
        if stream is not None:
            stream.close()  # a reader still waiting sees the end rather than a timeout

    def sessions(self) -> list[str]:
        return list(self._streams)

    # -- recordings stored on this node ---------------------------------------------------------

    # Reading runs on a thread: a large recording must not hold up this node's streams.

    async def recordings(self) -> list[RecordingInfo]:
        """This node's recordings, newest first."""
        if self._recordings is None:
            return []
        return await asyncio.to_thread(self._recordings.list)

    def recording(self, recording_id: str) -> RecordingInfo:
        return self._store(recording_id).info(recording_id)

    async def recording_frames(self, recording_id: str) -> bytes:
        """The recording's `.frames` file as stored."""
        return await asyncio.to_thread(self._store(recording_id).frames, recording_id)

    def delete_recording(self, recording_id: str) -> None:
        """Deletes a finished recording; one still being written raises RecordingInProgress."""
        stream = self._streams.get(recording_id)
        if stream is not None and not stream.ended:
            raise RecordingInProgress(recording_id)
        self._store(recording_id).delete(recording_id)

    def _store(self, recording_id: str) -> RecordingStore:
        if self._recordings is None:
            raise RecordingNotFound(recording_id)
        return self._recordings

    def _stream(self, session_id: str) -> EventStreamer:
        try:
            return self._streams[session_id]
        except KeyError:
            raise StreamUnavailable(session_id, "ended", "its stream is no longer kept") from None


@dataclass(frozen=True, slots=True)
class _SessionMethod:
    method: Any
    session_id: str

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self.method.remote(self.session_id, *args, **kwargs)


class _ForSession:
    """A StreamHost actor method, seen through a StreamHandle: the session comes first."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, handle: StreamHandle | None, owner: type | None = None) -> Any:
        if handle is None:
            return self
        return _SessionMethod(getattr(handle.host, self._name), handle.session_id)


@dataclass(frozen=True, slots=True)
class StreamHandle:
    """One session's stream in its node's StreamHost actor. Picklable, and equal to
    another handle of the same stream in the same actor."""

    host: Any
    session_id: str

    push = _ForSession()
    read = _ForSession()
    codec = _ForSession()
    report_viewers = _ForSession()
    stats = _ForSession()
    close = _ForSession()
    drop = _ForSession()


__all__ = ["StreamHandle", "StreamHost"]
