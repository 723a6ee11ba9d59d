"""Streamer: the streams of every session on one node, in one actor.

A streamer actor per session would cost a Python worker process (~60 MB) for work
that takes a few per cent of a core: numbering, compressing and buffering batches.
One Streamer per node keeps a SessionStream per session instead, each with its own
sequence numbers, codec context and buffer, exactly as a streamer of its own would.

It also holds the node's recordings (pipeline/recording.py): every stream writes its
session's recording as it goes, and the registry asks each node's Streamer for the
recordings it stores.

Runs as the Ray actor `streamer:<node id>`. Every method names the session it is
about; `push` and `close` also name the epoch the caller's stream was opened in, so a
session actor that outlived its replacement (a zombie on a lost node) cannot write
into the replacement's stream. `instance()` changes each time the actor starts, which
is how its supervisor (pipeline/nodes.py) tells a restarted streamer, which has lost
every stream, from one that was only slow to answer.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from pipeline.config import Settings
from pipeline.errors import RecordingInProgress, RecordingNotFound, StreamUnavailable
from pipeline.metrics import StreamMetrics
from pipeline.models import RecordingInfo, StreamStats
from pipeline.protocol import PageBatch
from pipeline.recording import RecordingStore
from pipeline.stream import ReadResult, SessionStream


@dataclass(frozen=True, slots=True)
class StreamRef:
    """Where one session's stream is: its node's Streamer actor and the epoch the stream
    was opened in. Picklable; the gateway and the session actor hold one each."""

    streamer: Any  # the Streamer actor's handle
    session_id: str
    epoch: int
    node_id: str = ""


class Streamer:
    def __init__(self, settings: Settings, metrics: StreamMetrics | None = None) -> None:
        self._settings = settings
        self._metrics = metrics
        self._streams: dict[str, SessionStream] = {}
        self._recordings = RecordingStore.from_settings(settings)
        self._instance = uuid.uuid4().hex

    def instance(self) -> str:
        """Who this is: a new value every time the actor (re)starts with no streams."""
        return self._instance

    def open(self, session_id: str, epoch: int = 0, record: bool = True) -> None:
        """Starts a session's stream in `epoch`. Reopening replaces the stream. With
        `record` False (the session's spec says `record: false`) nothing of it is
        written to storage."""
        earlier = self._streams.get(session_id)
        if earlier is not None:
            # Its waiting readers see its end and move on to the new stream; its recording
            # is finished first, so the new one appends after everything the earlier wrote.
            earlier.close()
        recording = (self._recordings.writer(session_id, self._settings.codec)
                     if self._recordings is not None and record else None)
        self._streams[session_id] = SessionStream(session_id, self._settings, epoch,
                                                  metrics=self._metrics, recording=recording)

    async def push(self, session_id: str, epoch: int, batches: list[PageBatch]) -> int:
        """Appends batches to the session's stream of `epoch`; returns the last sequence
        number. A stream of another epoch (or none) raises StreamUnavailable."""
        return await self._stream(session_id, epoch).push(batches)

    async def read(self, session_id: str, after_seq: int | None, timeout_s: float = 10.0,
                   reader: str | None = None, viewers: int = 0) -> ReadResult:
        return await self._stream(session_id).read(after_seq, timeout_s, reader, viewers)

    def codec(self, session_id: str) -> str:
        return self._stream(session_id).codec()

    def report_viewers(self, session_id: str, reader: str, viewers: int) -> None:
        self._stream(session_id).report_viewers(reader, viewers)

    def stats(self, session_id: str) -> StreamStats:
        return self._stream(session_id).stats()

    def close(self, session_id: str, epoch: int) -> None:
        """No more batches for this session; its readers drain the buffer and see `ended`."""
        self._stream(session_id, epoch).close()

    def drop(self, session_id: str) -> None:
        """Forgets a session's stream (its retention is over); idempotent."""
        stream = self._streams.pop(session_id, None)
        if stream is not None:
            stream.close()  # a reader still waiting sees the end rather than a timeout

    def close_all(self) -> None:
        """Ends every stream and flushes every recording (a graceful shutdown)."""
        for stream in self._streams.values():
            stream.close()

    def streams(self) -> dict[str, int]:
        """Session id -> epoch of every stream held (a restarted registry checks these)."""
        return {session_id: stream.epoch for session_id, stream in self._streams.items()}

    def viewers(self) -> dict[str, int]:
        """Session id -> viewers the gateway replicas reported (for idle timeouts)."""
        return {session_id: stream.viewer_count() for session_id, stream in self._streams.items()}

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

    def _stream(self, session_id: str, epoch: int | None = None) -> SessionStream:
        stream = self._streams.get(session_id)
        if stream is None:
            raise StreamUnavailable(session_id, "ended", "its stream is no longer kept")
        if epoch is not None and stream.epoch != epoch:
            raise StreamUnavailable(session_id, "restarted",
                                    f"its stream was reopened (epoch {stream.epoch}, "
                                    f"not {epoch})")
        return stream


__all__ = ["StreamRef", "Streamer"]
