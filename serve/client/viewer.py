"""One viewer of one stream over protocol v1: a live session or a recording's replay.

The Viewer keeps what must outlive a connection (the codec's context, the last batch
applied, what it saw); each Connection is one socket, handshake done. `run()` / `start()`
connect, apply everything, ack, and follow resets; with `reconnect=True` they also come
back by themselves after a lost connection and resume where they were, which is what a
viewer must do when a gateway replica dies. Nothing here imports Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.protocol import (
    ControlRefusal,
    ControlState,
    End,
    Error,
    InputEvent,
    InputRefusal,
    Reset,
    Status,
    Welcome,
)
from serve.client.connection import (
    ABNORMAL_CLOSE,
    Connection,
    SocketOptions,
    now_ms,
    open_socket,
)
from serve.client.errors import (
    BadFrame,
    ClientError,
    ConnectFailed,
    ProtocolError,
    SequenceGap,
    StreamClosed,
)
from serve.client.frames import Frame, StreamDecoder
from serve.client.messages import (
    CLIENT_RECONNECTS,
    FINAL_CLOSE_CODES,
    ControlMessage,
    hand_back,
    hello,
    input_message,
    take_control,
)

_HANDSHAKE_IDLE_S = 20.0
_STOP_GRACE_S = 2.0


class ViewerState(enum.Enum):
    IDLE = "idle"  # never connected
    CONNECTING = "connecting"  # socket opening, or hello sent and no welcome yet
    OPEN = "open"  # welcome received: frames flow
    RECONNECTING = "reconnecting"  # lost, waiting out the backoff before the next attempt
    CLOSED = "closed"  # no connection


_TRANSITIONS: dict[ViewerState, set[ViewerState]] = {
    ViewerState.IDLE: {ViewerState.CONNECTING, ViewerState.CLOSED},
    ViewerState.CONNECTING: {ViewerState.OPEN, ViewerState.CLOSED},
    ViewerState.OPEN: {ViewerState.CLOSED},
    ViewerState.RECONNECTING: {ViewerState.CONNECTING, ViewerState.CLOSED},
    ViewerState.CLOSED: {ViewerState.CONNECTING, ViewerState.RECONNECTING},
}


@dataclass(slots=True, frozen=True)
class Gap:
    """A frame that did not continue the sequence (`expected` None: no state to continue)."""

    at_ms: float
    expected: int | None
    got: int


@dataclass(slots=True, frozen=True)
class Reconnect:
    """A connection lost at `lost_at_ms` for `why`, and the one that replaced it: its
    welcome came at `connected_at_ms` saying `resume`, after `attempts` tries."""

    lost_at_ms: float
    connected_at_ms: float
    why: str
    resume: str
    attempts: int


@dataclass(slots=True)
class ViewerStats:
    frames: int = 0
    batches: int = 0
    events: int = 0  # from the frame headers
    bytes: int = 0  # binary messages as received
    reset_frames: int = 0
    skipped_frames: int = 0  # of superseded canvas pictures (FLAG_SKIPPED)
    bad_frames: int = 0
    statuses: int = 0
    acks_sent: int = 0


@dataclass(slots=True)
class _Waiter:
    predicate: Callable[[Frame], bool]
    since_ms: float | None
    future: asyncio.Future[Frame]


class Viewer:
    """One viewer of one stream (docs/protocol.md).

    It says `hello` with `resume_after` (the last batch applied) on every connection after
    the first, acks as the web viewer does, follows RESET frames and `reset` messages, and
    checks that every other frame continues the sequence. A frame that does not (a gap) or
    cannot be decoded is counted; then by default (`on_gap="reconnect"`) the viewer drops its
    state and joins again with `resume_after: null`, as the protocol says; with "raise" the
    error ends the run. With `reconnect=True` it comes back by itself after a lost connection
    (not after 1000 or a refusal: 4400, 4401, 4403, 4404), after a short backoff.

    Kept for the caller: every frame (`frames`, unless `keep_frames=False`), every control
    message (`controls`), `welcomes`, `resets`, `gaps`, `reconnects`, `stats`, and the close
    code and reason of the last close. `decode=False` reads headers only. With `skips`
    (the default) it tells the server it understands skipped frames: a canvas picture that
    a newer one of the same canvas superseded in the server's queue comes as its sequence
    numbers only (`Frame.skipped`, `stats.skipped_frames`); without, every picture comes.
    """

    def __init__(self, url: str, *, acks: bool = True, reconnect: bool = False,
                 resume: bool = True, decode: bool = True, keep_frames: bool = True,
                 on_gap: Literal["reconnect", "raise"] = "reconnect", token: str | None = None,
                 headers: Mapping[str, str] | None = None, idle_timeout_s: float | None = 20.0,
                 backoff_s: tuple[float, float] = (0.1, 2.0), max_retries: int | None = None,
                 on_frame: Callable[[Frame], None] | None = None,
                 on_message: Callable[[ControlMessage], None] | None = None,
                 compression: str | None = "deflate", max_queue: int | None = 16,
                 open_timeout_s: float = 10.0, ack_every_s: float = 0.5,
                 ack_bytes: int = 1024 * 1024, control: bool = False,
                 skips: bool = True) -> None:
        """`control`: speak protocol 1.1, hear who is in control (`control`) and, with a
        control link's `token`, take it (`take_control`, `send_input`, `hand_back`)."""
        self.url = url
        self._control = control
        self.acks = acks
        self.skips = skips
        self.idle_timeout_s = idle_timeout_s
        self.ack_every_s = ack_every_s
        self.ack_bytes = ack_bytes
        self._reconnect = reconnect
        self._resume = resume
        self._decode = decode
        self._keep_frames = keep_frames
        self._on_gap = on_gap
        self._token = token
        self._backoff_s = backoff_s
        self._max_retries = max_retries
        self._on_frame = on_frame
        self._on_message = on_message
        self._socket = SocketOptions(headers=headers, compression=compression,
                                     max_queue=max_queue, open_timeout_s=open_timeout_s)

        self.state = ViewerState.IDLE
        self.frames: list[Frame] = []
        self.controls: list[ControlMessage] = []
        self.welcomes: list[Welcome] = []
        self.resets: list[Reset] = []
        self.errors: list[Error] = []
        self.gaps: list[Gap] = []
        self.reconnects: list[Reconnect] = []
        self.stats = ViewerStats()
        self.status: Status | None = None
        self.end: End | None = None
        self.control: ControlState | None = None  # who is in control, as last told (1.1)
        self.refusals: list[ControlRefusal | InputRefusal] = []
        self.acked_seq: int | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.error: str | None = None  # why the last connection attempt failed
        self.connections = 0

        self._decoder: StreamDecoder | None = None
        self._announced: Reset | None = None  # the `reset` message its RESET frame follows
        self._conn: Connection | None = None
        self._lost_at: float | None = None
        self._lost_why = ""
        self._attempts = 0
        self._waiters: list[_Waiter] = []
        self._changed = asyncio.Event()
        self._running = False
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._finished: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    # -- what it knows ---------------------------------------------------------------------

    @property
    def last_seq(self) -> int | None:
        """The last batch applied (what the next `hello` resumes after)."""
        return self._decoder.last_seq if self._decoder is not None else None

    @property
    def codec(self) -> str | None:
        return self._decoder.codec if self._decoder is not None else None

    @property
    def welcome(self) -> Welcome | None:
        return self.welcomes[-1] if self.welcomes else None

    @property
    def connection(self) -> Connection | None:
        """The open connection, if any."""
        return self._conn

    def events(self) -> list[dict[str, Any]]:
        """Every rrweb event of the kept frames, in order (parsed now)."""
        return [event for frame in self.frames for event in frame.events]

    # -- one connection at a time ----------------------------------------------------------

    async def connect(self) -> Connection:
        """Opens a connection and says hello (resuming after `last_seq` unless `resume` is
        off); returns once `welcome` came. Raises ConnectFailed, or StreamClosed when the
        server closed first (an unknown id: 4404)."""
        if self._conn is not None:
            raise ClientError("this viewer already has an open connection")
        self._set_state(ViewerState.CONNECTING)
        self._attempts += 1
        try:
            ws = await open_socket(self.url, self._socket)
        except ConnectFailed as exc:
            self.error = str(exc)
            self._set_state(ViewerState.CLOSED)
            raise
        self.connections += 1
        conn = Connection(self, ws, self.connections)
        self._conn = conn
        resume_after = self.last_seq if self._resume else None
        try:
            await conn._handshake(hello(resume_after, acks=self.acks, token=self._token,
                                        control=self._control, skips=self.skips),
                                  self.idle_timeout_s or _HANDSHAKE_IDLE_S)
        except StreamClosed as closed:
            self.error = f"{self.url}: {closed}"
            raise
        except BaseException:
            conn.abort("the handshake failed")
            raise
        return conn

    # -- taking control of the page (protocol 1.1) -----------------------------------------

    async def take_control(self) -> None:
        """Asks for control; the answer is a `control` (`self.control.you`) or a
        `control_refused` (in `refusals`); a link that may not closes the socket (4403)."""
        await self._open_connection().send_text(take_control())

    async def hand_back(self) -> None:
        await self._open_connection().send_text(hand_back())

    async def send_input(self, *events: InputEvent, seq: int | None = None) -> None:
        """Input for the page, in the recorded page's CSS pixels; `seq` (default: the last
        batch applied) is what the person saw when they acted."""
        await self._open_connection().send_text(
            input_message(list(events), self.last_seq if seq is None else seq))

    def _open_connection(self) -> Connection:
        if self._conn is None:
            raise ClientError("this viewer has no open connection")
        return self._conn

    # -- the whole stream ------------------------------------------------------------------

    async def messages(self) -> AsyncIterator[Frame | ControlMessage]:
        """Everything the viewer applies, in order, across connections, until the stream
        ended (close 1000) or `stop()`. Raises StreamClosed for a refusal, and without
        `reconnect` for a lost connection (or ConnectFailed); SequenceGap or BadFrame with
        `on_gap="raise"`. Use it with `contextlib.aclosing` when you may leave early."""
        if self._running:
            raise ClientError("this viewer is already running")
        self._running, self._finished = True, None
        failures = 0
        error: BaseException | None = None
        try:
            while not self._stopping:
                try:
                    conn = await self.connect()
                except (ConnectFailed, StreamClosed) as exc:
                    if self._stopping or self._finishes(exc):
                        return
                    failures += 1
                    await self._backoff(failures, exc)
                    continue
                failures = 0
                try:
                    while True:
                        yield await conn.receive()
                except StreamClosed as closed:
                    if self._stopping or self._finishes(closed):
                        return
                    failures += 1
                    await self._backoff(failures, closed)
                except (SequenceGap, BadFrame) as problem:
                    await conn.close(CLIENT_RECONNECTS, "client reconnects")
                    self._lost_why = str(problem)
                    if self._on_gap == "raise":
                        raise
                    # Its state is gone: join again at once, with resume_after null.
                finally:
                    if conn.closed is None:  # the caller left the iteration early
                        await conn.close()
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._running = False
            self._finish(error)

    async def run(self) -> None:
        """Applies everything until the stream ends or `stop()` (see `messages()`)."""
        async with contextlib.aclosing(self.messages()) as items:
            async for _ in items:
                pass

    def start(self) -> None:
        """Runs in a background task; `stop()` ends it and raises what it failed with."""
        if self._task is not None:
            raise ClientError("this viewer is already started")
        self._stopping = False
        self._stop_event.clear()
        self._task = asyncio.create_task(self.run(), name=f"viewer:{self.url}")

    async def stop(self) -> None:
        """Closes the connection (1000, "viewer left") and ends the background task."""
        self._stopping = True
        self._stop_event.set()
        if self._conn is not None:
            await self._conn.close()
        task, self._task = self._task, None
        if task is None:
            return
        await asyncio.wait([task], timeout=_STOP_GRACE_S)
        if not task.done():  # still opening a socket
            task.cancel()
            await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    async def __aenter__(self) -> Viewer:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(self, predicate: Callable[[Frame], bool], timeout_s: float, *,
                       since_ms: float | None = None) -> Frame:
        """The first frame (kept, or still to come) that arrived at or after `since_ms` and
        satisfies `predicate`, e.g. `lambda f: f.full_snapshot`. Needs the viewer running
        (`start()`); raises TimeoutError, or why the viewer stopped first."""
        for frame in self.frames:
            if _after(frame, since_ms) and predicate(frame):
                return frame
        if not self._active:
            raise self._not_running()
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(predicate, since_ms, future)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            raise TimeoutError(f"no such frame within {timeout_s:g} s from {self.url} "
                               f"(viewer {self.state.value}, last close {self.close_code})"
                               ) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> None:
        """Waits until `condition()` holds; it is checked after every message and change of
        state, e.g. `lambda: viewer.end is not None` or `lambda: len(viewer.reconnects) > 0`."""
        async with asyncio.timeout(timeout_s):
            while not condition():
                if not self._active:
                    raise self._not_running()
                changed = self._changed
                await changed.wait()

    # -- applying what arrives -------------------------------------------------------------

    def _apply_control(self, message: ControlMessage, conn: Connection) -> ControlMessage:
        self.controls.append(message)
        if isinstance(message, Welcome):
            if conn.welcome is not None:
                raise ProtocolError("a second welcome on one connection")
            conn.welcome = message
            self.welcomes.append(message)
            if self._decoder is None or self._decoder.codec != message.codec:
                self._decoder = StreamDecoder(message.codec, decode=self._decode)
            self._set_state(ViewerState.OPEN)
            if self._lost_at is not None:
                self.reconnects.append(Reconnect(self._lost_at, now_ms(), self._lost_why,
                                                 message.resume, self._attempts))
                self._lost_at = None
            self._attempts = 0
        elif isinstance(message, Status):
            self.status = message
            self.stats.statuses += 1
        elif isinstance(message, Reset):
            self.resets.append(message)
            self._announced = message
        elif isinstance(message, End):
            self.end = message
        elif isinstance(message, ControlState):
            self.control = message
        elif isinstance(message, ControlRefusal | InputRefusal):
            self.refusals.append(message)
        else:
            self.errors.append(message)
        if self._on_message is not None:
            self._on_message(message)
        self._wake()
        return message

    def _apply_frame(self, data: bytes, arrival_ms: float, connection: int) -> Frame:
        assert self._decoder is not None  # a welcome came first
        try:
            frame = self._decoder.read(data, arrival_ms)
        except SequenceGap as gap:
            self.gaps.append(Gap(arrival_ms, gap.expected, gap.got))
            self._decoder.reset()
            raise
        except BadFrame:
            self.stats.bad_frames += 1
            self._decoder.reset()
            raise
        frame.connection = connection
        header = frame.header
        if header.reset:
            self.stats.reset_frames += 1
            announced, self._announced = self._announced, None
            if announced is not None and announced.seq == header.first_seq:
                frame.reset_reason = announced.reason
        stats = self.stats
        stats.frames += 1
        stats.skipped_frames += header.skipped
        stats.batches += header.last_seq - header.first_seq + 1
        stats.events += header.event_count
        stats.bytes += frame.size
        if self._keep_frames:
            self.frames.append(frame)
        if self._on_frame is not None:
            self._on_frame(frame)
        if self._waiters:
            self._notify(frame)
        self._wake()
        return frame

    def _notify(self, frame: Frame) -> None:
        for waiter in list(self._waiters):
            if waiter.future.done() or not _after(frame, waiter.since_ms):
                continue
            try:
                if waiter.predicate(frame):
                    waiter.future.set_result(frame)
            except Exception as exc:  # the caller's predicate failed: it hears why
                waiter.future.set_exception(exc)

    def _connection_ended(self, conn: Connection, closed: StreamClosed, why: str) -> None:
        if self._conn is conn:
            self._conn = None
        self.close_code, self.close_reason = closed.code, closed.reason
        self._lost_at, self._lost_why = now_ms(), why
        self._set_state(ViewerState.CLOSED)

    # -- lifecycle -------------------------------------------------------------------------

    def _finishes(self, exc: ConnectFailed | StreamClosed) -> bool:
        """Whether the run ends here (True: returns; raises: fails); else it reconnects."""
        if isinstance(exc, StreamClosed) and exc.code == 1000:
            return True
        if isinstance(exc, StreamClosed) and exc.code in FINAL_CLOSE_CODES:
            raise exc
        if not self._reconnect:
            raise exc
        return False

    async def _backoff(self, failures: int, exc: ClientError) -> None:
        if self._max_retries is not None and failures > self._max_retries:
            raise exc
        self.error = str(exc)
        self._set_state(ViewerState.RECONNECTING)
        # Exponential with equal jitter (frontend/src/viewer/backoff.js), so viewers that a
        # dying replica dropped together do not all come back in the same instant.
        base, cap = self._backoff_s
        ceiling = min(cap, base * 2 ** min(failures - 1, 30))
        delay = ceiling / 2 + random.random() * ceiling / 2
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), delay)

    def _finish(self, error: BaseException | None) -> None:
        if self.state is not ViewerState.CLOSED:
            self._set_state(ViewerState.CLOSED)
        if error is None or isinstance(error, (asyncio.CancelledError, GeneratorExit)):
            self._finished = StreamClosed(self.close_code or ABNORMAL_CLOSE,
                                          self.close_reason or "the viewer stopped")
        else:
            self._finished = error
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(self._finished)
        self._wake()

    @property
    def _active(self) -> bool:
        """Running, or started and about to."""
        return self._running or (self._task is not None and not self._task.done())

    def _not_running(self) -> BaseException:
        if self._finished is not None:
            return self._finished
        return ClientError("the viewer is not running: start() it first")

    def _set_state(self, state: ViewerState) -> None:
        if state is not self.state and state not in _TRANSITIONS[self.state]:
            raise ClientError(f"viewer cannot go from {self.state.value} to {state.value}")
        self.state = state
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


def _after(frame: Frame, since_ms: float | None) -> bool:
    return since_ms is None or (frame.arrival_ms is not None and frame.arrival_ms >= since_ms)


__all__ = ["Gap", "Reconnect", "Viewer", "ViewerState", "ViewerStats"]
