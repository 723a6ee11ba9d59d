"""Streamer: the streams of every session on one node, in one actor.

A streamer actor per session would cost a Python worker process (~60 MB) for work
that takes a few per cent of a core: numbering, compressing and buffering batches.
One Streamer per node keeps a SessionStream per session instead, each with its own
sequence numbers, codec context and buffer, exactly as a streamer of its own would.

It also writes the recordings (pipeline/recording.py): every stream writes its
session's recording as it goes, into the store (pipeline/recording_store.py). A local
store is the node's own, so the registry asks each node's Streamer for the recordings it
holds, the gateway reads them from it one chunk at a time, and the Streamer applies
retention to it (pipeline/retention.py); a shared store (S3) is read and kept by the
registry and the gateway directly.

And it holds the node's asset cache (pipeline/asset_cache.py): what the node's sessions'
browsers loaded, which the gateway serves to viewers as `/assets/<sha256>`, and which the
recordings that name an asset keep a copy of.

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

from pipeline.asset_cache import Asset, AssetCache, valid_asset_id
from pipeline.config import Settings
from pipeline.errors import RecordingInProgress, RecordingNotFound, StreamUnavailable
from pipeline.metrics import StreamMetrics
from pipeline.models import RecordingInfo, StreamStats
from pipeline.protocol import PageBatch
from pipeline.recording_index import IndexUpdate
from pipeline.recording_store import RecordingStore
from pipeline.retention import Retention
from pipeline.stream import ReadResult, SessionStream

_FLUSH_S = 10.0  # a closed stream's recording is written within this, or logged


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
        self._assets = AssetCache(settings.asset_cache_bytes)
        self._retention = (Retention.from_settings(settings, self._recordings, self._live)
                           if self._recordings is not None and not self._recordings.shared
                           else None)
        if self._retention is not None:
            self._retention.start()

    def instance(self) -> str:
        """Who this is: a new value every time the actor (re)starts with no streams."""
        return self._instance

    async def open(self, session_id: str, epoch: int = 0, record: bool = True,
                   name: str | None = None) -> None:
        """Starts a session's stream in `epoch`. Reopening replaces the stream. With
        `record` False (the session's spec says `record: false`) nothing of it is
        written to storage."""
        earlier = self._streams.get(session_id)
        if earlier is not None:
            # Its waiting readers see its end and move on to the new stream; its recording
            # is finished first, so the new one appends after everything the earlier wrote.
            earlier.close()
            await earlier.flush_recording(_FLUSH_S)
        recording = (await asyncio.to_thread(self._recordings.writer, session_id,
                                             self._settings.codec, name)
                     if self._recordings is not None and record else None)
        self._streams[session_id] = SessionStream(session_id, self._settings, epoch,
                                                  metrics=self._metrics, recording=recording,
                                                  assets=self._assets)

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

    async def close(self, session_id: str, epoch: int) -> None:
        """No more batches for this session; its readers drain the buffer and see `ended`.
        Returns once its recording is written."""
        stream = self._stream(session_id, epoch)
        stream.close()
        await stream.flush_recording(_FLUSH_S)

    def drop(self, session_id: str) -> None:
        """Forgets a session's stream (its retention is over); idempotent."""
        stream = self._streams.pop(session_id, None)
        if stream is not None:
            stream.close()  # a reader still waiting sees the end rather than a timeout

    async def close_all(self) -> None:
        """Ends every stream and flushes every recording (a graceful shutdown)."""
        for stream in self._streams.values():
            stream.close()
        await asyncio.gather(*(s.flush_recording(_FLUSH_S) for s in self._streams.values()))
        if self._retention is not None:
            self._retention.stop()

    def streams(self) -> dict[str, int]:
        """Session id -> epoch of every stream held (a restarted registry checks these)."""
        return {session_id: stream.epoch for session_id, stream in self._streams.items()}

    def viewers(self) -> dict[str, int]:
        """Session id -> viewers the gateway replicas reported (for idle timeouts)."""
        return {session_id: stream.viewer_count() for session_id, stream in self._streams.items()}

    # -- the node's assets ---------------------------------------------------------------------

    def put_asset(self, asset: Asset) -> None:
        """Keeps what a session's browser loaded (pipeline/asset_capture.py)."""
        if valid_asset_id(asset.id):
            self._assets.put(asset)

    async def asset(self, asset_id: str) -> Asset | None:
        """The asset with this hash: from the cache, else from a recording in this node's
        own store that keeps it (a shared store the gateway reads itself)."""
        found = self._assets.get(asset_id)
        if found is not None or self._recordings is None or self._recordings.shared:
            return found
        return await asyncio.to_thread(self._recordings.find_asset, asset_id)

    async def has_asset(self, asset_id: str) -> bool:
        """Whether `asset` finds it here (the registry asks every node; no bytes move)."""
        if asset_id in self._assets:
            return True
        if self._recordings is None or self._recordings.shared:
            return False
        return await asyncio.to_thread(self._recordings.keeps_asset, asset_id)

    # -- recordings stored on this node ---------------------------------------------------------

    # The store is read on a thread: a slow disk or a large listing must not hold up this
    # node's streams.

    async def recordings(self) -> list[RecordingInfo]:
        """This node's recordings, newest first."""
        if self._recordings is None:
            return []
        return await asyncio.to_thread(self._recordings.list)

    async def recording(self, recording_id: str) -> RecordingInfo:
        return await asyncio.to_thread(self._store(recording_id).info, recording_id)

    async def recording_chunk(self, recording_id: str, index: int) -> bytes:
        """One stored chunk of the recording (at most a few MiB: a reader fetches them one
        at a time)."""
        return await asyncio.to_thread(self._store(recording_id).chunk, recording_id, index)

    async def recording_indexes(self, known: dict[str, str]) -> IndexUpdate:
        """This node's search indexes: their versions, and those changed since `known`."""
        if self._recordings is None:
            return IndexUpdate({}, {})
        return await asyncio.to_thread(self._recordings.index_update, known)

    async def delete_recording(self, recording_id: str) -> None:
        """Deletes a finished recording; one still being written raises RecordingInProgress."""
        if recording_id in self._live():
            raise RecordingInProgress(recording_id)
        await asyncio.to_thread(self._store(recording_id).delete, recording_id)

    def _live(self) -> set[str]:
        """The recordings still being written here (also asked from retention's thread:
        a copy of the dict is taken at once)."""
        return {sid for sid, stream in list(self._streams.items()) if not stream.ended}

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
