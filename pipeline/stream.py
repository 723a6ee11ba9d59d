"""SessionStream: numbers, compresses and buffers one session's batches; serves long-poll reads.

Lives in its node's Streamer actor (`streamer:<node id>`, pipeline/streamer.py)
beside the streams of the node's other sessions; the class is plain Python so it can
be tested without Ray. A batch of over a MiB (a very large DOM's snapshot: tens of MB)
is compressed on a thread (zlib and lz4 let go of the GIL), so the other sessions'
pushes and reads go on meanwhile; a session pushes one call at a time, so its own
batches stay in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from pipeline.asset_cache import AssetCache
from pipeline.buffer import StreamBuffer
from pipeline.codec import make_encoder
from pipeline.config import Settings
from pipeline.errors import StreamUnavailable
from pipeline.metrics import StreamMetrics
from pipeline.models import StreamStats
from pipeline.protocol import Chunk, PageBatch
from pipeline.recording import RecordingWriter

_RATE_WINDOW_S = 5.0
_log = logging.getLogger(__name__)
_READER_EXPIRY_S = 30.0
EPOCH_BITS = 40
_THREAD_CHARS = 2**20  # a batch this big is compressed on a thread


def first_seq(epoch: int) -> int:
    """The first sequence number of a stream opened in `epoch`."""
    return (epoch << EPOCH_BITS) + 1


@dataclass(slots=True, frozen=True)
class ReadResult:
    chunks: list[Chunk]
    reset: bool
    ended: bool
    last_seq: int
    epoch: int


class SessionStream:
    def __init__(self, session_id: str, settings: Settings, epoch: int = 0,
                 metrics: StreamMetrics | None = None,
                 recording: RecordingWriter | None = None,
                 assets: AssetCache | None = None) -> None:
        """`epoch`: see the module docstring; `recording` stores every chunk exactly as
        viewers get it, and a copy of each asset (from the node's `assets`) they name."""
        self.session_id = session_id
        self.epoch = epoch
        self._metrics = metrics
        self._log = logging.LoggerAdapter(_log, {"session_id": session_id})
        self._encoder = make_encoder(settings.codec)
        self._codec = settings.codec
        self._buffer = StreamBuffer(settings.buffer_max_bytes, settings.buffer_max_segments)
        self._first_seq = first_seq(epoch)
        self._seq = self._first_seq - 1
        self._events = 0
        self._bytes_raw = 0
        self._bytes_compressed = 0
        self._recent: deque[tuple[float, int]] = deque()
        self._readers: dict[str, tuple[int, float]] = {}
        self._changed = asyncio.Event()
        self._recording = recording
        self._assets = assets
        self._assets_gone: set[str] = set()  # named, but no longer cached: said once
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    def codec(self) -> str:
        return self._codec

    async def push(self, batches: list[PageBatch]) -> int:
        """Numbers and compresses batches in order; returns the last sequence number."""
        if self._ended:
            raise StreamUnavailable(self.session_id, "ended", "its stream was closed")
        now = time.time() * 1000.0
        events, raw, compressed = self._events, self._bytes_raw, self._bytes_compressed
        canvas = 0
        for batch in batches:
            canvas += batch.canvas_chars
            # The first batch ever starts a segment even if the page did not flag it,
            # so the codec context and every reader have a place to begin.
            start = batch.checkout or self._seq == self._first_seq - 1
            # A canvas picture is sealed so that a live viewer may be sent the segment
            # without it once a newer picture of the canvas supersedes it; never a
            # segment's first batch, which every later payload needs.
            picture = batch.picture_of if self._encoder.can_seal and not start else None
            seal = picture is not None
            if len(batch.text) < _THREAD_CHARS:
                data = batch.text.encode() + b"\n"
                payload = self._encoder.encode(data, segment_start=start, seal=seal)
            else:
                data, payload = await asyncio.to_thread(self._encode, batch.text, start, seal)
                if self._ended:
                    raise StreamUnavailable(self.session_id, "ended", "its stream was closed")
            self._seq += 1
            chunk = Chunk(self._seq, start, batch.event_count, batch.first_ts, batch.last_ts,
                          now, payload, picture)
            self._buffer.append(chunk)
            if self._recording is not None:
                self._recording.append(chunk, batch.text)
                if batch.error is not None:
                    self._recording.noted_error(batch.error)
                if batch.assets and self._assets is not None:
                    self._keep_assets(self._recording, self._assets, batch.assets)
            self._events += batch.event_count
            self._bytes_raw += len(data)
            self._bytes_compressed += len(payload)
        self._recent.append((now / 1000.0, self._events - events))
        if self._metrics is not None:
            self._metrics.recorded(self._events - events, self._bytes_raw - raw,
                                   self._bytes_compressed - compressed, canvas)
        self._log.debug("batches up to %d: %d events", self._seq, self._events - events,
                        extra={"seq": self._seq})
        self._wake()
        return self._seq

    def _keep_assets(self, recording: RecordingWriter, cache: AssetCache,
                     ids: tuple[str, ...]) -> None:
        for asset_id in ids:
            asset = cache.get(asset_id)
            if asset is not None:
                recording.keep_asset(asset)
            elif asset_id not in self._assets_gone:  # replays show the page without it
                self._assets_gone.add(asset_id)
                self._log.info("the asset %s of session %s is no longer cached; its "
                               "recording goes without it", asset_id, self.session_id)

    def _encode(self, text: str, segment_start: bool, seal: bool) -> tuple[bytes, bytes]:
        data = text.encode() + b"\n"
        return data, self._encoder.encode(data, segment_start=segment_start, seal=seal)

    async def read(self, after_seq: int | None, timeout_s: float = 10.0,
                   reader: str | None = None, viewers: int = 0) -> ReadResult:
        """Chunks after `after_seq`, waiting up to `timeout_s` when there are none yet."""
        if reader is not None:
            self.report_viewers(reader, viewers)
        catchup = self._buffer.after(after_seq)
        if not catchup.chunks and not self._ended and timeout_s > 0:
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), timeout_s)
            except TimeoutError:
                pass
            catchup = self._buffer.after(after_seq)
        return ReadResult(catchup.chunks, catchup.reset, self._ended, self._seq, self.epoch)

    def report_viewers(self, reader: str, viewers: int) -> None:
        self._readers[reader] = (viewers, time.monotonic())

    def viewer_count(self) -> int:
        """Viewers the gateway replicas reading this stream reported in the last 30 s."""
        now = time.monotonic()
        self._readers = {k: v for k, v in self._readers.items()
                         if now - v[1] < _READER_EXPIRY_S}
        return sum(v for v, _ in self._readers.values())

    def stats(self) -> StreamStats:
        wall = time.time()
        while self._recent and wall - self._recent[0][0] > _RATE_WINDOW_S:
            self._recent.popleft()
        return StreamStats(
            batches=self._seq - self._first_seq + 1,
            events=self._events,
            bytes_raw=self._bytes_raw,
            bytes_compressed=self._bytes_compressed,
            last_seq=self._seq,
            segments_buffered=self._buffer.segment_count,
            bytes_buffered=self._buffer.nbytes,
            viewers=self.viewer_count(),
            events_per_s=sum(n for _, n in self._recent) / _RATE_WINDOW_S,
            ended=self._ended,
        )

    def close(self) -> None:
        """No more batches will come; readers drain what is buffered and see `ended`. The
        recording's last chunk is on its way to the store (`flush_recording` waits)."""
        self._ended = True
        if self._recording is not None:
            self._recording.close()
        self._wake()

    async def flush_recording(self, timeout_s: float) -> None:
        """Waits (on a thread) until the recording is written, up to `timeout_s`."""
        if self._recording is not None and not await asyncio.to_thread(
                self._recording.flush, timeout_s):
            self._log.warning("the recording of session %s was not written within %g s",
                              self.session_id, timeout_s)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


__all__ = ["EPOCH_BITS", "ReadResult", "SessionStream", "first_seq"]
