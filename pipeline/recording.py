"""RecordingWriter: one session's recording, written in chunks as it streams.

A chunk is a sequence of records, each a 4-byte little-endian length and one protocol v1
binary frame holding one batch, `encode_frame(id, [chunk])`: the very bytes the streamer
compressed once for viewers, segment flags included, so a reader decodes it from any
segment start exactly as a viewer does. A chunk is cut at every segment start (a
checkout: every few seconds) and at RRSTREAM_RECORDING_CHUNK_BYTES, whichever comes
first, and written whole (object stores have no append), so a node that dies loses at
most the chunk it was filling. The recording's metadata (RecordingInfo) is rewritten
after every chunk: the visited URLs from each checkout's Meta event, the errors the
session noted.

Writes run on the store's I/O threads, one recording's in order, so a slow store (S3)
holds up no stream; `flush()` waits for them (a stopped session's recording is complete
when its stream is closed).
"""

from __future__ import annotations

import json
import logging
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Protocol

from pipeline.asset_cache import Asset
from pipeline.models import RecordingInfo
from pipeline.protocol import Chunk, FrameHeader, decode_frame, encode_frame
from pipeline.recording_index import IndexDocument, RecordingIndex

_LENGTH = struct.Struct("<I")
_HEADER_PEEK = 256  # a frame header and its session id fit in this
# The Meta event that starts every checkout: `[{"type":4,"data":{"href":"…",…` (rrweb's
# JSON, key order as rrweb writes it); only the batch's first few kB are looked at.
_HREF = re.compile(r'"type":4,"data":\{"href":("(?:[^"\\]|\\.)*")')
_HREF_PEEK = 8192
MAX_URLS = 1_000
_log = logging.getLogger(__name__)


class ChunkSink(Protocol):
    """Where a writer's chunks and metadata go (pipeline/recording_store.py)."""

    def write_chunk(self, recording_id: str, index: int, data: bytes) -> None: ...

    def write_info(self, info: RecordingInfo) -> None: ...

    def write_index(self, recording_id: str, data: bytes) -> None: ...

    def write_asset(self, recording_id: str, asset: Asset) -> None: ...


def checkout_url(text: str) -> str | None:
    """The page URL of a checkout batch (its Meta event), without parsing the batch."""
    found = _HREF.search(text, 0, _HREF_PEEK)
    if found is None:
        return None
    try:
        url = json.loads(found.group(1))
    except ValueError:
        return None
    return url if isinstance(url, str) else None


class RecordingWriter:
    """Appends one session's chunks to its recording, in the order the streamer numbered
    them. Nothing is written before the first chunk, so a stream that never carried a
    batch (a warm browser that was never used) leaves nothing behind. An I/O error (a
    full disk, a store that refuses) is logged once and ends the recording; the stream
    goes on without it."""

    def __init__(self, sink: ChunkSink, info: RecordingInfo, executor: Executor,
                 chunk_bytes: int, index: IndexDocument | None = None) -> None:
        """`info`: the recording so far (a new one, or what an earlier writer of the same
        session left: chunks go on after its last); `index`: its search index so far."""
        self._sink = sink
        self._info = info
        self._index = RecordingIndex(info.id, index)
        self._index_written = len(self._index)
        self._chunk_bytes = chunk_bytes
        self._buffer = bytearray()
        self._jobs: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._executor = executor
        self._failed = False
        self._closed = False
        self._last_url = info.urls[-1] if info.urls else None
        self._assets: set[str] = set()  # the ids of the assets it keeps

    def append(self, chunk: Chunk, text: str | None = None) -> None:
        """`text`: the batch as the page sent it (a checkout's URL, the search index)."""
        if self._failed or self._closed:
            return
        if chunk.segment_start and self._buffer:
            self._cut()
        frame = encode_frame(self._info.id, [chunk])
        self._buffer += _LENGTH.pack(len(frame))
        self._buffer += frame
        info = self._info
        info.batches += 1
        info.events += chunk.event_count
        info.bytes_compressed += len(chunk.payload)
        info.first_seq = chunk.seq if info.first_seq is None else info.first_seq
        info.last_seq = chunk.seq
        info.first_ts = chunk.first_ts if info.first_ts is None else info.first_ts
        info.last_ts = max(info.last_ts or chunk.last_ts, chunk.last_ts)
        if text is not None:
            if chunk.segment_start:
                self._visited(checkout_url(text))
            self._index.add(text, chunk.last_ts)
        if len(self._buffer) >= self._chunk_bytes:
            self._cut()
        elif info.batches == 1 and info.chunks == 0:
            # Listed from its first batch on, not only once its first chunk is stored.
            self._submit(info.model_copy(deep=True), None)

    def keep_asset(self, asset: Asset) -> None:
        """The recording names `asset` (pipeline/asset_urls.py): it keeps a copy, so a
        replay shows it after the node's cache let it go."""
        if self._failed or self._closed or asset.id in self._assets:
            return
        self._assets.add(asset.id)
        recording_id = self._info.id

        def job() -> None:
            try:
                self._sink.write_asset(recording_id, asset)
            except Exception as exc:  # OSError, or whatever the store's client raises
                # Only this asset is missing from replays; the recording goes on.
                _log.warning("recording of session %s goes without the asset %s: %s",
                             recording_id, asset.id, exc, extra={"session_id": recording_id})

        self._enqueue(job)

    def noted_error(self, message: str) -> None:
        """The session noted an error (a failed step, its own failure, the page's)."""
        if self._closed:
            return
        self._info.errors += 1
        if self._info.error is None:
            self._info.error = message[:1_000]

    def close(self) -> None:
        """Writes what is left and the final metadata (see `flush`); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._failed or (self._info.batches == 0 and not self._info.chunks):
            return
        if self._buffer:
            self._cut()
        else:
            self._info.ended_at = time.time()
            self._submit(self._info.model_copy(deep=True), None)

    def flush(self, timeout_s: float) -> bool:
        """Waits until everything appended so far is written; False on timeout."""
        return self._idle.wait(timeout_s)

    def _visited(self, url: str | None) -> None:
        if url is None or url == self._last_url:
            return
        self._last_url = url
        info = self._info
        info.page_count += 1
        if url not in info.urls and len(info.urls) < MAX_URLS:
            info.urls.append(url)

    def _cut(self) -> None:
        data, self._buffer = bytes(self._buffer), bytearray()
        info = self._info
        index = info.chunks
        info.chunks += 1
        if self._closed:
            info.ended_at = time.time()
        entries = len(self._index)
        if entries == self._index_written:
            self._submit(info.model_copy(deep=True), (index, data))
            return
        self._index_written = entries
        self._submit(info.model_copy(deep=True), (index, data), entries)

    def _submit(self, info: RecordingInfo, chunk: tuple[int, bytes] | None,
                index_entries: int | None = None) -> None:
        """`index_entries`: the index has grown; write it with its first that many."""
        def job() -> None:
            if chunk is not None:
                self._sink.write_chunk(info.id, *chunk)
            if index_entries is not None:
                # Made here, off the stream's loop: a join of each entry's JSON.
                self._sink.write_index(info.id, self._index.document_json(
                    info.chunks, info.first_ts, index_entries))
            self._sink.write_info(info)

        self._enqueue(job)

    def _enqueue(self, write: Callable[[], None]) -> None:
        """Runs `write` on the store's threads after every write before it; the first that
        fails ends the recording."""
        recording_id = self._info.id

        def job() -> None:
            if self._failed:
                return
            try:
                write()
            except Exception as exc:  # OSError, or whatever the store's client raises
                self._failed = True
                _log.error("recording of session %s stopped: %s", recording_id, exc,
                           extra={"session_id": recording_id})

        with self._lock:
            self._jobs.append(job)
            if not self._idle.is_set():
                return  # the drain already running takes it in turn
            self._idle.clear()
        self._executor.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._idle.set()
                    return
                job = self._jobs.popleft()
            job()


def _spans(view: memoryview) -> Iterator[tuple[int, int]]:
    """Where each whole record's frame is: (offset, length). A record cut short at the end
    (a chunk written by something that died mid-write) ends the iteration."""
    pos = 0
    while pos + _LENGTH.size <= len(view):
        (length,) = _LENGTH.unpack_from(view, pos)
        pos += _LENGTH.size
        if pos + length > len(view):
            return
        yield pos, length
        pos += length


def iter_records(data: bytes) -> Iterator[bytes]:
    """The binary frames of a chunk, in order."""
    view = memoryview(data)
    for pos, length in _spans(view):
        yield bytes(view[pos:pos + length])


def record_headers(data: bytes) -> Iterator[tuple[FrameHeader, int]]:
    """Each frame's header and its payload's length, without copying payloads."""
    view = memoryview(data)
    for pos, length in _spans(view):
        header, _ = decode_frame(bytes(view[pos:pos + min(length, _HEADER_PEEK)]))
        yield header, length - header.header_length


__all__ = ["MAX_URLS", "ChunkSink", "RecordingWriter", "checkout_url", "iter_records",
           "record_headers"]
