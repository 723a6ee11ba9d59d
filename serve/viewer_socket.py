"""ViewerSockets: protocol v1 (docs/protocol.md) over one gateway replica's WebSockets.

A live viewer is attached to its session's hub (serve/viewers.py: one pull loop per
session and replica, a bounded queue per viewer); a recording replay reads the stored
frames and paces them (serve/replay.py). Every way a socket ends has a close code and a
reason: a refusal at `hello` (4400, 4408; a token refused 4401 or not for this 4403;
4404), a limit (1013), the session's end (1000), a registry being restarted (1013, try
again), a failure of ours (1011, logged). An upgrade from a foreign `Origin` is refused
with HTTP 403 before the socket opens.

Plain Python over a RegistryClient, so unit tests run it against a fake registry and a
real WebSocket server without Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from pipeline.config import Settings
from pipeline.errors import (
    RecordingNotFound,
    RegistryUnavailable,
    SessionNotFound,
    StreamUnavailable,
    describe_error,
)
from pipeline.models import SessionRecord
from pipeline.protocol import (
    CLIENT_MESSAGE,
    PROTOCOL_VERSION,
    Ack,
    CloseCode,
    End,
    Error,
    HandBack,
    Hello,
    Input,
    Reset,
    Status,
    TakeControl,
    Welcome,
    encode_frame,
)
from pipeline.streamer import StreamRef
from serve.access import Access, NotForThis, still_valid
from serve.control_socket import ControlSocket, SessionLines
from serve.recording_reader import Recordings, frames
from serve.replay import replay_frames
from serve.viewer_tokens import TargetKind, TokenRefused, ViewerClaims
from serve.viewers import SessionHub, Viewer

_log = logging.getLogger(__name__)
_STATUS_EVERY_S = 1.0
# What a viewer may send: a hello, then an ack at most every ~0.5 s (the web viewer's and
# the Python client's pace). Far more is a broken or hostile client.
MAX_MESSAGE_CHARS = 65_536
MAX_MESSAGES_PER_S = 50
# A viewer with a control link may drive the page (protocol 1.1): its input comes as it
# happens, mouse moves at most once an animation frame.
MAX_CONTROL_MESSAGES_PER_S = 250
_REVOCATION_CHECK_S = 1.0


class GatewayReport(Protocol):
    """Where the replica reports viewers and latency (Prometheus in production)."""

    def viewers(self, count: int) -> None: ...

    def latency(self, event_ts_ms: float) -> None: ...

    def pictures_skipped(self, count: int) -> None: ...


async def refuse(websocket: WebSocket, code: CloseCode, reason: str) -> None:
    """Tells the client why (an `error` message), then closes with `code` and the reason."""
    with contextlib.suppress(Exception):
        await websocket.send_text(Error(code=code, message=reason).model_dump_json())
        await websocket.close(code, reason[:120])


async def _read_hello(websocket: WebSocket, timeout_s: float) -> Hello | None:
    """The client's hello, or None after closing the socket with the reason why."""
    try:
        message = await asyncio.wait_for(websocket.receive(), timeout_s)
    except TimeoutError:
        await refuse(websocket, CloseCode.HELLO_TIMEOUT, f"no hello within {timeout_s:g} s")
        return None
    except (WebSocketDisconnect, RuntimeError):
        return None  # gone before saying hello
    if message["type"] == "websocket.disconnect":
        return None
    raw = message.get("text")
    if raw is None:
        await refuse(websocket, CloseCode.BAD_HELLO, "the hello must be a text message")
        return None
    if len(raw) > MAX_MESSAGE_CHARS:
        await refuse(websocket, CloseCode.BAD_HELLO, _too_large(len(raw)))
        return None
    try:
        hello = CLIENT_MESSAGE.validate_json(raw)
    except ValidationError as exc:
        await refuse(websocket, CloseCode.BAD_HELLO, f"bad hello: {exc.errors()[0]['msg']}")
        return None
    if not isinstance(hello, Hello):
        await refuse(websocket, CloseCode.BAD_HELLO, "the first message must be a hello")
        return None
    if hello.protocol != PROTOCOL_VERSION:
        await refuse(websocket, CloseCode.BAD_HELLO,
                     f"protocol {hello.protocol} unsupported; this server speaks "
                     f"{PROTOCOL_VERSION}")
        return None
    return hello


def _too_large(size: int) -> str:
    return f"a message of {size:,} characters; at most {MAX_MESSAGE_CHARS:,} are accepted"


class MessageRate:
    """Counts a client's messages per second; `over()` once it sent more than allowed."""

    def __init__(self, per_s: int = MAX_MESSAGES_PER_S, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._per_s, self._clock = per_s, clock
        self._window_start, self._count = clock(), 0

    def over(self) -> bool:
        now = self._clock()
        if now - self._window_start >= 1.0:
            self._window_start, self._count = now, 0
        self._count += 1
        return self._count > self._per_s


async def _receive(websocket: WebSocket, on_ack: Callable[[int], None],
                   control: ControlSocket | None = None) -> None:
    """Reads acks (and, from a 1.1 viewer, its control messages) until the client leaves
    (a handler that only sends would never notice)."""
    rate = MessageRate(MAX_CONTROL_MESSAGES_PER_S if control is not None and control.can_take
                       else MAX_MESSAGES_PER_S)
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if rate.over():
            await refuse(websocket, CloseCode.TRY_AGAIN_LATER,
                         f"more than {MAX_MESSAGES_PER_S} messages a second from this viewer")
            return
        text = message.get("text")
        if text is not None and len(text) > MAX_MESSAGE_CHARS:
            await refuse(websocket, CloseCode.BAD_HELLO, _too_large(len(text)))
            return
        try:
            parsed = CLIENT_MESSAGE.validate_json(text or b"")
        except ValidationError as exc:
            await refuse(websocket, CloseCode.BAD_HELLO,
                         f"bad message: {exc.errors()[0]['msg']}")
            return
        if isinstance(parsed, Ack):
            on_ack(parsed.seq)
            if control is not None:
                control.acked = parsed.seq
            continue
        if control is None or not isinstance(parsed, TakeControl | HandBack | Input):
            await refuse(websocket, CloseCode.BAD_HELLO, "after hello only acks are accepted"
                         if control is None else "after hello only acks, take_control, "
                         "hand_back and input are accepted")
            return
        try:
            await control.on_message(parsed)
        except TokenRefused as exc:
            await refuse(websocket, CloseCode.UNAUTHORIZED, str(exc))
            return
        except NotForThis as exc:
            await refuse(websocket, CloseCode.FORBIDDEN, str(exc))
            return


async def _until_first_done(*coros: Any) -> None:
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, WebSocketDisconnect | RuntimeError):
                raise exc
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _closing_on_failure(websocket: WebSocket, work: Awaitable[None], what: str,
                              session_id: str) -> None:
    """Runs an accepted socket's handler. A registry being restarted closes the socket with
    1013 (the viewer comes back in a moment); any other failure with 1011 and a reason.
    Without this the server drops the TCP connection and the viewer sees 1006 with no
    reason; nothing recorded is lost either way."""
    try:
        await work
    except (WebSocketDisconnect, asyncio.CancelledError):
        raise
    except RegistryUnavailable as exc:
        _log.warning("%s: %s", what, exc, extra={"session_id": session_id})
        await refuse(websocket, CloseCode.TRY_AGAIN_LATER, str(exc))
    except Exception as exc:
        _log.exception("%s failed: %s", what, describe_error(exc),
                       extra={"session_id": session_id})
        await refuse(websocket, CloseCode.INTERNAL_ERROR,
                     f"internal error: {describe_error(exc)}")


class ViewerSockets:
    """The WebSocket side of one gateway replica."""

    def __init__(self, settings: Settings, registry: Any, metrics: GatewayReport,
                 access: Access | None = None, recordings: Recordings | None = None,
                 lines: SessionLines | None = None) -> None:
        """`registry`: a RegistryClient (serve/registry_client.py) or a fake of one;
        `recordings`: where replays read from (through the registry if not given);
        `lines`: how a viewer in control reaches a session's actor (none: no one can take
        control)."""
        self._settings = settings
        self._lines = lines
        self._registry = registry
        self._recordings = recordings or Recordings(None, registry)
        self._access = access or Access(settings)
        self._metrics = metrics
        self._hubs: dict[str, SessionHub] = {}
        self._viewers = 0  # open viewer streams on this replica
        self._closing: set[asyncio.Task[None]] = set()

    def health(self) -> dict[str, Any]:
        hubs = self._hubs.values()
        return {"hubs": len(self._hubs), "viewers": sum(h.viewer_count for h in hubs),
                "deepest_viewer_queue": max((h.deepest_queue for h in hubs), default=0)}

    async def live(self, websocket: WebSocket, session_id: str) -> None:
        """Streams one session to one viewer."""
        hub = self._hubs.get(session_id)
        await self._opened(websocket, hub.viewer_count if hub else 0,
                           lambda: self._stream_to(websocket, session_id),
                           f"viewer of session {session_id}", session_id)

    async def replay(self, websocket: WebSocket, recording_id: str) -> None:
        """Replays a stored recording in real time."""
        await self._opened(websocket, None, lambda: self._replay_to(websocket, recording_id),
                           f"replay of recording {recording_id}", recording_id)

    async def _opened(self, websocket: WebSocket, viewers: int | None,
                      work: Callable[[], Awaitable[None]], what: str, target: str) -> None:
        """Runs `work` on the socket once its origin and the client's limits allow it."""
        if not self._access.origin_allowed(websocket.headers):
            _log.warning("%s refused: its page's origin %s is not allowed", what,
                         websocket.headers.get("origin"), extra={"session_id": target})
            await websocket.close(CloseCode.FORBIDDEN)  # before accept: HTTP 403
            return
        limits = self._access.limits
        client = websocket.client
        address = self._access.address(client.host if client else None, websocket.headers)
        refusal = limits.stream_connect(address, viewers)
        await websocket.accept()
        if refusal is not None:
            await refuse(websocket, CloseCode.TRY_AGAIN_LATER,
                         f"{refusal.message}; try again in {refusal.retry_after_s} s")
            return
        limits.opened(address)
        try:
            await _closing_on_failure(websocket, work(), what, target)
        finally:
            limits.closed(address)

    async def _admitted(self, websocket: WebSocket, hello: Hello, kind: TargetKind,
                        target: str) -> tuple[bool, ViewerClaims | None]:
        """Whether the hello's token opens `target` (else the socket is closed: 4401, 4403)."""
        try:
            return True, self._access.admit(hello.token, kind, target)
        except TokenRefused as exc:
            await refuse(websocket, CloseCode.UNAUTHORIZED, str(exc))
        except NotForThis as exc:
            await refuse(websocket, CloseCode.FORBIDDEN, str(exc))
        return False, None

    async def close(self) -> None:
        hubs, self._hubs = list(self._hubs.values()), {}
        await asyncio.gather(*(h.close() for h in hubs), *self._closing,
                             return_exceptions=True)

    # -- live -------------------------------------------------------------------------------

    async def _stream_to(self, websocket: WebSocket, session_id: str) -> None:
        # With auth required the token is checked first, so that a client without one
        # learns nothing, not even whether the session exists; with auth off an unknown
        # id is refused at once, before the hello.
        record = None
        if not self._access.required:
            record = await self._session(websocket, session_id)
            if record is None:
                return
        hello = await _read_hello(websocket, self._settings.hello_timeout_s)
        if hello is None:
            return
        admitted, claims = await self._admitted(websocket, hello, "session", session_id)
        if not admitted:
            return
        if record is None:
            record = await self._session(websocket, session_id)
            if record is None:
                return
        if claims is not None:
            try:
                still_valid(claims, record.link_generation)
            except TokenRefused as exc:
                await refuse(websocket, CloseCode.UNAUTHORIZED, str(exc))
                return
        try:
            stream = await self._wait_for_stream(websocket, session_id)
        except StreamUnavailable as exc:
            with contextlib.suppress(Exception):
                await websocket.send_text(End(reason="failed" if exc.state == "failed" else
                                              "stopped", state=exc.state).model_dump_json())
                await websocket.close(CloseCode.SESSION_ENDED, str(exc)[:120])
            return
        hub = self._hub(session_id, stream)
        hub.link_generation = max(hub.link_generation, record.link_generation)
        viewer, continues = await hub.attach(hello.resume_after)
        self._viewers += 1
        self._metrics.viewers(self._viewers)
        if hello.acks:
            viewer.use_acks(self._settings.viewer_window_bytes)
        if hello.skips:
            viewer.skip_pictures()
        control = (self._control_socket(websocket, session_id, hub, hello)
                   if hello.minor >= 1 else None)
        try:
            codec = await hub.stream.streamer.codec.remote(session_id)
            await websocket.send_text(Welcome(
                session_id=session_id, codec=codec, resume="continue" if continues else "reset",
                state=hub.status.state,
            ).model_dump_json())
            await _until_first_done(
                self._send(websocket, session_id, hub, viewer),
                _receive(websocket, viewer.ack, control),
                *([_token_watch(websocket, claims, lambda: hub.link_generation)]
                  if claims is not None else []),
                *([control.run()] if control is not None else []),
            )
        finally:
            if control is not None:
                await control.close()
            hub.detach(viewer)
            self._viewers -= 1
            self._metrics.viewers(self._viewers)

    def _control_socket(self, websocket: WebSocket, session_id: str, hub: SessionHub,
                        hello: Hello) -> ControlSocket:
        """A 1.1 viewer's part in taking control; it may take it if its token is a control
        link of this session (checked with auth off too: watching needs no token then,
        driving the page does)."""
        def check() -> ViewerClaims:
            claims = self._access.controller(hello.token, session_id)
            still_valid(claims, hub.link_generation)
            return claims

        try:
            claims: ViewerClaims | None = check()
        except (TokenRefused, NotForThis):
            claims = None
        return ControlSocket(session_id, websocket.send_text, hub, self._lines, claims, check)

    async def _session(self, websocket: WebSocket, session_id: str) -> SessionRecord | None:
        """The session's record, or None after refusing the socket (4404)."""
        try:
            return await self._registry.get(session_id)
        except SessionNotFound as exc:
            await refuse(websocket, CloseCode.UNKNOWN_SESSION, str(exc))
            return None

    async def _wait_for_stream(self, websocket: WebSocket, session_id: str) -> StreamRef:
        """The session's stream; while the session waits for a browser slot, the viewer
        hears so once a second."""
        while True:
            try:
                return await self._registry.stream(session_id, None, 1.0)
            except TimeoutError:
                record = await self._registry.get(session_id)
                await websocket.send_text(Status(state=str(record.state)).model_dump_json())

    def _frame_interval(self) -> float:
        """Seconds between one viewer's frames so that this replica's viewers together stay
        near `gateway_frames_per_s`: zero for a few viewers, longer as they grow. Frames
        per second, not viewers or bytes, bound the replica's cost."""
        budget = self._settings.gateway_frames_per_s
        interval = self._viewers / budget if budget > 0 else 0.0
        return interval if interval > 0.005 else 0.0

    async def _send(self, websocket: WebSocket, session_id: str, hub: SessionHub,
                    viewer: Viewer) -> None:
        loop = asyncio.get_running_loop()
        last_status = 0.0
        while True:
            delivery = await viewer.next(_STATUS_EVERY_S, self._frame_interval())
            if delivery.reset is not None and delivery.frames:
                await websocket.send_text(
                    Reset(reason=delivery.reset, seq=delivery.frames[0][0].seq).model_dump_json()
                )
            for index, frame in enumerate(delivery.frames):
                reset = index == 0 and delivery.reset is not None and frame[0].segment_start
                skipped = index in delivery.skipped
                data = encode_frame(session_id, frame, reset=reset, skipped=skipped)
                await websocket.send_bytes(data)
                viewer.sent(frame[-1].seq, len(data))
                if skipped:
                    self._metrics.pictures_skipped(len(frame))
                else:
                    self._metrics.latency(frame[-1].last_ts)
            now = loop.time()
            if now - last_status >= _STATUS_EVERY_S:
                await websocket.send_text(hub.status_json)
                last_status = now
            if delivery.end is not None:
                await websocket.send_text(delivery.end.model_dump_json())
                await websocket.close(CloseCode.SESSION_ENDED, f"session {delivery.end.reason}")
                return

    def _hub(self, session_id: str, stream: StreamRef) -> SessionHub:
        hub = self._hubs.get(session_id)
        if hub is not None and hub.ended:
            self._drop_hub(hub)  # its viewers have their `end`; a new one follows the session
            hub = None
        if hub is None:
            hub = SessionHub(session_id, stream, self._registry,
                             self._settings.viewer_queue_frames, self._drop_hub)
            self._hubs[session_id] = hub
        return hub

    def _drop_hub(self, hub: SessionHub) -> None:
        if self._hubs.get(hub.session_id) is hub:
            del self._hubs[hub.session_id]
        task = asyncio.create_task(hub.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- recordings -------------------------------------------------------------------------

    async def _replay_to(self, websocket: WebSocket, recording_id: str) -> None:
        hello = await _read_hello(websocket, self._settings.hello_timeout_s)
        if hello is None:
            return
        admitted, claims = await self._admitted(websocket, hello, "recording", recording_id)
        if not admitted:
            return
        try:
            reader, info = await self._recordings.reader(recording_id)
        except RecordingNotFound as exc:
            await refuse(websocket, CloseCode.UNKNOWN_SESSION, str(exc))
            return
        await websocket.send_text(Welcome(session_id=recording_id, codec=info.codec,
                                          resume="reset", state="stopped").model_dump_json())
        # Acks are read and ignored: a replay is paced by the clock, not by the viewer.
        await _until_first_done(_replay_then_end(websocket, frames(reader, info.chunks)),
                                _receive(websocket, lambda seq: None),
                                *([_token_watch(websocket, claims, lambda: 0)]
                                  if claims is not None else []))


async def _token_watch(websocket: WebSocket, claims: ViewerClaims,
                       generation: Callable[[], int]) -> None:
    """Closes the socket (4401) when its token expires or its session's links are revoked
    (the hub learns that within a second; this looks every second)."""
    loop_time = asyncio.get_running_loop().time
    deadline = loop_time() + (claims.expires_at - time.time())
    while True:
        try:
            still_valid(claims, generation())
        except TokenRefused as exc:
            await refuse(websocket, CloseCode.UNAUTHORIZED, str(exc))
            return
        left = deadline - loop_time()
        if left <= 0:
            await refuse(websocket, CloseCode.UNAUTHORIZED, "the viewer token has expired")
            return
        await asyncio.sleep(min(left, _REVOCATION_CHECK_S))


async def _replay_then_end(websocket: WebSocket, frames: AsyncIterator[bytes]) -> None:
    await replay_frames(websocket, frames)
    with contextlib.suppress(Exception):
        await websocket.send_text(End(reason="stopped", state="stopped").model_dump_json())
        await websocket.close(CloseCode.SESSION_ENDED, "recording replayed")


__all__ = ["GatewayReport", "ViewerSockets", "refuse"]
