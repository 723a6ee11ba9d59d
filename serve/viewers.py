"""Fan-out inside one gateway replica: one pull loop per session, one bounded queue per viewer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.buffer import Catchup, StreamBuffer
from pipeline.errors import RegistryUnavailable, StreamUnavailable, describe_error
from pipeline.protocol import Chunk, End, ResetReason, Status
from pipeline.stream import EPOCH_BITS
from pipeline.streamer import StreamRef
from serve.control_socket import ViewLag

_log = logging.getLogger(__name__)
_READ_TIMEOUT_S = 10.0
_IDLE_HUB_S = 30.0
_FOLLOW_S = 60.0  # a session that gets no new stream within this is reported failed
_FOLLOW_POLL_S = 10.0
_HUB_KEEP_BYTES = 32 * 1024 * 1024
_HUB_KEEP_SEGMENTS = 3


@dataclass(slots=True)
class Delivery:
    """What a viewer's sender writes next: frames, each a run of one segment's chunks.
    `skipped`: the indexes of the frames that are superseded canvas pictures (sent as
    FLAG_SKIPPED frames: sequence numbers, no payload)."""

    frames: list[list[Chunk]] = field(default_factory=list)
    skipped: set[int] = field(default_factory=set)
    reset: ResetReason | None = None
    end: End | None = None


class Viewer:
    """One viewer's queue. It never grows past a segment beyond its bound: a viewer that
    falls behind skips ahead to the newest checkout it has queued.

    A viewer that acknowledges what it applied also gets a window: once that many bytes
    are unacknowledged, frames wait here, where the bound applies, instead of piling up
    in socket and proxy buffers that no one bounds.

    A catch-up (what a viewer that resumes missed, e.g. while its replica was replaced)
    does not count against the bound: it is what the viewer asked for, and no longer than
    the stream keeps. Only what arrives beyond it can make the viewer slow.

    A viewer that understands skipped frames (`skip_pictures`) is not sent a canvas
    picture that a newer picture of the same canvas, in the same segment, superseded while
    both were queued: only its sequence numbers go (a skipped frame), so the sequence stays
    whole. Nothing else is ever left out, and nothing already taken by the sender.
    """

    def __init__(self, max_frames: int) -> None:
        self._max = max_frames
        self._pending: deque[Chunk] = deque()
        self._catchup = 0  # chunks of the catch-up still queued (the oldest ones)
        self._reset: ResetReason | None = None
        self._end: End | None = None
        self._wake = asyncio.Event()
        self._window: int | None = None
        self._in_flight: deque[tuple[int, int]] = deque()  # (last seq, bytes) per frame
        self._in_flight_bytes = 0
        self.last_seq: int | None = None
        self.skips = 0
        self._last_delivery = 0.0
        self._skip_pictures = False
        self._pictures: dict[int, int] = {}  # canvas id -> seq of its newest queued picture
        self._superseded: set[int] = set()  # seqs of queued pictures sent as skipped
        self.pictures_skipped = 0

    @property
    def depth(self) -> int:
        """Chunks queued and not yet taken by the sender."""
        return len(self._pending)

    @property
    def window_open(self) -> bool:
        return self._window is None or self._in_flight_bytes < self._window

    def use_acks(self, window_bytes: int) -> None:
        self._window = window_bytes

    def skip_pictures(self) -> None:
        """The viewer said in its hello that it understands skipped frames."""
        self._skip_pictures = True

    def prime(self, chunks: list[Chunk], reset: ResetReason | None) -> None:
        """`reset`: why the viewer starts at a checkout; its first frame says so, even when
        nothing is buffered yet and that frame comes later."""
        if reset is not None:
            self._reset = reset
        self.offer(chunks, catchup=True)

    def offer(self, chunks: list[Chunk], catchup: bool = False) -> None:
        queued = len(self._pending)
        for chunk in chunks:
            if self.last_seq is not None and chunk.seq <= self.last_seq:
                continue  # already queued from a catch-up read
            self._pending.append(chunk)
            self.last_seq = chunk.seq
            if chunk.segment_start:
                self._pictures.clear()  # a new replay: its pictures supersede none before
            elif self._skip_pictures and chunk.picture_of is not None:
                older = self._pictures.get(chunk.picture_of)
                if older is not None:
                    self._superseded.add(older)
                    self.pictures_skipped += 1
                self._pictures[chunk.picture_of] = chunk.seq
        if catchup:
            self._catchup += len(self._pending) - queued
        if len(self._pending) > self._max + self._catchup:
            self._skip_to_latest_checkout()
        if self._pending:
            self._wake.set()

    def restart(self, chunks: list[Chunk], reason: ResetReason) -> None:
        """The stream started over (the session moved to another node): begin again at
        its checkout, whatever was queued."""
        self._pending.clear()
        self._pictures.clear()
        self._superseded.clear()
        self._catchup = 0
        self.last_seq = None
        self.prime(chunks, reason)

    def sent(self, last_seq: int, nbytes: int) -> None:
        if self._window is not None:
            self._in_flight.append((last_seq, nbytes))
            self._in_flight_bytes += nbytes

    def ack(self, seq: int) -> None:
        was_open = self.window_open
        while self._in_flight and self._in_flight[0][0] <= seq:
            self._in_flight_bytes -= self._in_flight.popleft()[1]
        if self._pending and not was_open and self.window_open:
            self._wake.set()  # frames held back for the window can go now

    def finish(self, end: End) -> None:
        self._end = end
        self._wake.set()

    def _skip_to_latest_checkout(self) -> None:
        for index in range(len(self._pending) - 1, 0, -1):
            if self._pending[index].segment_start:
                for _ in range(index):
                    self._superseded.discard(self._pending.popleft().seq)
                self._catchup = max(0, self._catchup - index)
                self._reset = "slow_viewer"
                self.skips += 1
                return

    async def next(self, timeout_s: float, min_interval_s: float = 0.0) -> Delivery:
        """What to send next, waiting up to `timeout_s` for it. With `min_interval_s`, frames
        go out at most that often: what arrives meanwhile joins the next frame."""
        if not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._wake.wait()
        if min_interval_s > 0 and self._pending:
            loop = asyncio.get_running_loop()
            wait = self._last_delivery + min_interval_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_delivery = loop.time()
        self._wake.clear()
        if not self.window_open:
            return Delivery()
        delivery = Delivery()
        # What is queued goes out now, as few frames as segments allow: under load a
        # viewer gets fewer, larger frames instead of one per page batch.
        room = None if self._window is None else self._window - self._in_flight_bytes
        while self._pending and (room is None or room > 0 or not delivery.frames):
            chunk = self._pending.popleft()
            self._catchup = max(0, self._catchup - 1)
            skipped = chunk.seq in self._superseded
            if skipped:
                self._superseded.discard(chunk.seq)
            elif chunk.picture_of is not None and self._pictures.get(chunk.picture_of) == chunk.seq:
                del self._pictures[chunk.picture_of]  # taken: no longer to be superseded
            last = len(delivery.frames) - 1
            if chunk.segment_start or last < 0 or (last in delivery.skipped) != skipped:
                delivery.frames.append([])
                if skipped:
                    delivery.skipped.add(last + 1)
            delivery.frames[-1].append(chunk)
            if room is not None and not skipped:
                room -= len(chunk.payload)
        if delivery.frames:  # the reason goes with the frames it explains
            delivery.reset, self._reset = self._reset, None
        if self._pending:
            self._wake.set()  # the window closed first; the rest goes after an ack
        elif self._end is not None:
            delivery.end = self._end
        return delivery


class SessionHub:
    """Pulls one session's stream from its streamer and feeds every local viewer."""

    def __init__(self, session_id: str, stream: StreamRef, registry: Any, queue_frames: int,
                 on_idle: Callable[[SessionHub], None]) -> None:
        self.session_id = session_id
        self._stream = stream
        self._registry = registry
        self._queue_frames = queue_frames
        self._on_idle = on_idle
        self._reader = f"gateway-{uuid.uuid4().hex[:8]}"
        self._buffer = StreamBuffer(_HUB_KEEP_BYTES, _HUB_KEEP_SEGMENTS)
        self._viewers: set[Viewer] = set()
        self._joining: list[list[Chunk]] = []
        self._ready = asyncio.Event()
        self._end: End | None = None
        self._idle_since = time.monotonic()
        self.status = Status(state="pending")
        self.link_generation = 0  # the session's, as of the last poll (revoked links)
        # Who is in control of the page (a control link's label), as of the last poll or
        # a take on this replica; when each run of batches came (serve/control_socket.py).
        self.controller: str | None = None
        self.arrivals = ViewLag()
        self.status_json = self.status.model_dump_json()  # sent to every viewer each second
        self._tasks = {
            asyncio.create_task(self._pull(), name=f"pull:{session_id}"),
            asyncio.create_task(self._poll_status(), name=f"status:{session_id}"),
        }

    @property
    def viewer_count(self) -> int:
        return len(self._viewers)

    @property
    def stream(self) -> StreamRef:
        return self._stream

    @property
    def ended(self) -> bool:
        return self._end is not None

    @property
    def deepest_queue(self) -> int:
        return max((v.depth for v in self._viewers), default=0)

    async def attach(self, resume_after: int | None) -> tuple[Viewer, bool]:
        """Adds a viewer; True when it continues right after `resume_after`."""
        await self._ready.wait()
        viewer = Viewer(self._queue_frames)
        catchup = self._buffer.after(resume_after)
        if catchup.reset and resume_after is not None:
            # Older than this replica's copy: the streamer may still have it. What the pull
            # loop hands out meanwhile is kept for this viewer, to follow the catch-up.
            arriving: list[Chunk] = []
            self._joining.append(arriving)
            try:
                result = await self._stream.streamer.read.remote(self.session_id,
                                                                 resume_after, 0.0)
            finally:
                self._joining.remove(arriving)
            if not result.reset:
                catchup = Catchup(result.chunks + arriving, reset=False)
            else:
                catchup = self._buffer.after(None)
        reason: ResetReason | None = None
        if catchup.reset:
            if resume_after is None:
                reason = "join"
            elif resume_after >> EPOCH_BITS < self._stream.epoch:
                reason = "restart"  # it last saw a stream the session has since replaced
            else:
                reason = "gap"
        viewer.prime(list(catchup.chunks), reason)
        self._viewers.add(viewer)
        if self._end is not None:
            viewer.finish(self._end)
        self._report_viewers()
        return viewer, not catchup.reset

    def detach(self, viewer: Viewer) -> None:
        self._viewers.discard(viewer)
        if not self._viewers:
            self._idle_since = time.monotonic()
        self._report_viewers()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _report_viewers(self) -> None:
        self._stream.streamer.report_viewers.remote(self.session_id, self._reader,
                                                    len(self._viewers))

    async def _pull(self) -> None:
        after: int | None = None
        restarted = False  # the next chunks open a new stream of the session: viewers restart
        while True:
            stream = self._stream
            try:
                result = await stream.streamer.read.remote(
                    self.session_id, after, _READ_TIMEOUT_S, self._reader, len(self._viewers)
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Its streamer died, or the stream is gone: follow the session to its new
                # stream (the streamer restarted, or the session moved to another node).
                _log.warning("session %s: its stream cannot be read (%s)", self.session_id,
                             describe_error(exc), extra={"session_id": self.session_id})
                if not await self._follow():
                    return
                after, restarted = None, True
                continue
            if result.epoch != stream.epoch:  # reopened in place, on the same streamer
                self._stream = StreamRef(stream.streamer, stream.session_id, result.epoch,
                                         stream.node_id)
                after, restarted = None, True
                continue
            if result.reset:
                self._buffer.clear()
            for chunk in result.chunks:
                self._buffer.append(chunk)
            if result.chunks:
                after = result.chunks[-1].seq
                self.arrivals.arrived(after, time.monotonic())
                for arriving in self._joining:
                    arriving.extend(result.chunks)
                for viewer in self._viewers:
                    if result.reset:
                        viewer.restart(result.chunks, "restart" if restarted else "gap")
                    else:
                        viewer.offer(result.chunks)
                restarted = False
            self._ready.set()
            if result.ended and (not result.chunks or after == result.last_seq):
                if await self._follow():  # the session goes on in a newer stream
                    after, restarted = None, True
                    continue
                return
            if not self._viewers and time.monotonic() - self._idle_since > _IDLE_HUB_S:
                self._on_idle(self)
                return

    async def _follow(self) -> bool:
        """The stream ended or cannot be read. True once the session has a newer stream
        (`_stream` is then that one); False when the session is over (viewers got `end`,
        the hub is done)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _FOLLOW_S
        while loop.time() < deadline:
            try:
                self._stream = await self._registry.stream(self.session_id,
                                                            self._stream.epoch, _FOLLOW_POLL_S)
                return True
            except StreamUnavailable:
                break  # the session ended
            except (TimeoutError, RegistryUnavailable):
                if not self._viewers and time.monotonic() - self._idle_since > _IDLE_HUB_S:
                    break
                await asyncio.sleep(0.2)
        self._finish(await self._final_state())
        self._on_idle(self)  # its viewers have their `end`; late ones get a new hub
        return False

    async def _final_state(self) -> End:
        try:
            record = await self._registry.get(self.session_id)
        except Exception as exc:
            _log.warning("session %s: its final state is unknown (%s)", self.session_id,
                         describe_error(exc), extra={"session_id": self.session_id})
            return End(reason="failed", state="unknown")
        outcome = "failed" if record.state == "failed" else "stopped"
        return End(reason=outcome, state=str(record.state))

    def _finish(self, end: End) -> None:
        self._end = end
        self._ready.set()
        for viewer in self._viewers:
            viewer.finish(end)

    async def _poll_status(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                record, status, stats = await self._registry.describe(self.session_id)
                self.link_generation = record.link_generation
                self.controller = status.controller if status else None
                self.status = Status(
                    state=str(record.state),
                    url=(status.url if status else None),
                    events=stats.events if stats else 0,
                    batches=stats.batches if stats else 0,
                    bytes_raw=stats.bytes_raw if stats else 0,
                    bytes_compressed=stats.bytes_compressed if stats else 0,
                    viewers=stats.viewers if stats else len(self._viewers),
                    step=_current_step(status),
                    steps_total=len(status.steps) if status else 0,
                    error=record.error,
                )
                self.status_json = self.status.model_dump_json()
            await asyncio.sleep(1.0)


def _current_step(status: Any) -> int | None:
    if status is None:
        return None
    for step in status.steps:
        if step.state in ("running", "pending"):
            return step.index
    return None


__all__ = ["Delivery", "SessionHub", "Viewer"]
