"""Reading a stored recording on the gateway, one chunk at a time.

A shared store (S3) is read directly; a node's local store through that node's
Streamer, one chunk per Ray call (a few MiB), never the whole recording at once. At most
two chunks of a recording are held at a time (the one being sent, the next one being
fetched), so serving an hour-long recording holds a few MiB (RRSTREAM_RECORDING_CHUNK_BYTES
each; a single frame larger than that, a huge page's snapshot, is a chunk of its own).

From the chunks: the binary frames (the WebSocket replay, `/frames`) and the standard
rrweb JSON array of events (`/events`), decoded with the one protocol v1 decoder
(serve/client/frames.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

from pipeline.models import RecordingInfo
from pipeline.protocol import decode_frame
from pipeline.recording import iter_records
from pipeline.recording_index import IndexUpdate
from pipeline.recording_store import RecordingStore
from serve.client.frames import StreamDecoder


class ChunkReader(Protocol):
    async def info(self) -> RecordingInfo: ...

    async def chunk(self, index: int) -> bytes: ...


class StoreReader:
    """A recording in a shared store, read from the gateway itself."""

    def __init__(self, store: RecordingStore, recording_id: str) -> None:
        self._store = store
        self._id = recording_id

    async def info(self) -> RecordingInfo:
        return await asyncio.to_thread(self._store.info, self._id)

    async def chunk(self, index: int) -> bytes:
        return await asyncio.to_thread(self._store.chunk, self._id, index)


class StreamerReader:
    """A recording in a node's local store, read through the node's Streamer actor."""

    def __init__(self, streamer: Any, recording_id: str) -> None:
        self._streamer = streamer
        self._id = recording_id

    async def info(self) -> RecordingInfo:
        result: RecordingInfo = await self._streamer.recording.remote(self._id)
        return result

    async def chunk(self, index: int) -> bytes:
        result: bytes = await self._streamer.recording_chunk.remote(self._id, index)
        return result


class Recordings:
    """The gateway's one way to the recordings: a shared store directly, else through the
    registry (which asks the nodes) and the streamer that stores each."""

    def __init__(self, store: RecordingStore | None, registry: Any) -> None:
        """`store`: the configured store when it is shared; `registry`: a RegistryClient."""
        self._store = store if store is not None and store.shared else None
        self._registry = registry

    @property
    def shared_store(self) -> RecordingStore | None:
        """The store the whole cluster shares, if it is one (else each node has its own)."""
        return self._store

    async def list(self) -> list[RecordingInfo]:
        if self._store is not None:
            return await asyncio.to_thread(self._store.list)
        listed: list[RecordingInfo] = await self._registry.recordings()
        return listed

    async def info(self, recording_id: str) -> RecordingInfo:
        if self._store is not None:
            return await asyncio.to_thread(self._store.info, recording_id)
        info: RecordingInfo = await self._registry.recording(recording_id)
        return info

    async def reader(self, recording_id: str) -> tuple[ChunkReader, RecordingInfo]:
        """A reader of the recording, and its metadata as of now (RecordingNotFound)."""
        reader: ChunkReader
        if self._store is not None:
            reader = StoreReader(self._store, recording_id)
        else:
            reader = StreamerReader(await self._registry.recording_streamer(recording_id),
                                    recording_id)
        return reader, await reader.info()

    async def delete(self, recording_id: str) -> None:
        await self._registry.delete_recording(recording_id)  # it knows which are live

    async def index_update(self, known: dict[str, str]) -> IndexUpdate:
        """The search indexes' versions, and those changed since `known`."""
        if self._store is not None:
            return await asyncio.to_thread(self._store.index_update, known)
        update: IndexUpdate = await self._registry.recording_indexes(known)
        return update


async def chunks(reader: ChunkReader, count: int) -> AsyncIterator[bytes]:
    """The first `count` chunks in order, the next one fetched while one is used."""
    if count <= 0:
        return
    upcoming = asyncio.ensure_future(reader.chunk(0))
    try:
        for index in range(count):
            data = await upcoming
            if index + 1 < count:
                upcoming = asyncio.ensure_future(reader.chunk(index + 1))
            yield data
    finally:
        if not upcoming.done():
            upcoming.cancel()


async def frames(reader: ChunkReader, count: int) -> AsyncIterator[bytes]:
    """The recording's binary frames, in order."""
    async for data in chunks(reader, count):
        for record in iter_records(data):
            yield record


async def event_array(reader: ChunkReader, info: RecordingInfo) -> AsyncIterator[bytes]:
    """The recording as one JSON array of rrweb events, in pieces of a batch or so. Where
    the session began again (a new epoch after its node was lost) the events go on from
    its next checkout; a frame that cannot be decoded there is left out."""
    decoder = StreamDecoder(info.codec)
    yield b"["
    first = True
    async for record in frames(reader, info.chunks):
        header, _ = decode_frame(record)
        jumps = decoder.last_seq is None or header.first_seq != decoder.last_seq + 1
        if jumps and not header.segment_start:
            continue  # nothing decodes before the next segment start
        frame = decoder.read(record, None, starts_over=jumps)
        for line in frame.text.splitlines() if frame.text else []:
            inner = line.strip()[1:-1]  # each batch is a JSON array of events
            if not inner:
                continue
            yield inner if first else b"," + inner
            first = False
    yield b"]"


__all__ = ["ChunkReader", "Recordings", "StoreReader", "StreamerReader", "chunks", "event_array",
           "frames"]
