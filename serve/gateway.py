"""The Ray Serve ingress: REST API, WebSocket streams, and the static viewer.

(No `from __future__ import annotations` here: FastAPI reads these signatures at run
time through Serve's wrappers, which cannot resolve string annotations.)

It holds no session state: the registry actor knows the sessions, the streamer
actors hold the streams, so any replica can serve any viewer of any session.
"""


import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from ray import serve

from pipeline.config import Settings
from pipeline.errors import (
    PoolFull,
    RecordingInProgress,
    RecordingNotFound,
    SessionNotFound,
    StreamUnavailable,
    unwrap,
)
from pipeline.logs import configure_logging
from pipeline.metrics import GatewayMetrics
from pipeline.models import PoolStatus, RecordingInfo, SessionInfo, SessionSpec
from pipeline.protocol import (
    CLIENT_MESSAGE,
    PROTOCOL_VERSION,
    Ack,
    CloseCode,
    End,
    Error,
    Hello,
    Reset,
    Status,
    Welcome,
    encode_frame,
)
from pipeline.recorder import assets_dir
from pipeline.registry import get_or_create_registry
from serve.info import session_info
from serve.replay import replay_frames
from serve.uvicorn_options import disable_permessage_deflate
from serve.viewers import SessionHub, Viewer

_log = logging.getLogger(__name__)
_STATUS_EVERY_S = 1.0
# Serve runs a replica's handlers on a thread of their own by default, and every message
# a WebSocket sends then crosses to uvicorn's loop and back; on the server's loop, sends
# cost less and a slow socket holds back only its own sender.
_REPLICA_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}

disable_permessage_deflate()  # runs in each replica as it imports this module

app = FastAPI(
    title="rrstream",
    description="Live streaming of real browser sessions to web viewers, built on Ray.",
    version="0.1.0",
)


@app.exception_handler(SessionNotFound)
async def _session_not_found(_: Request, exc: SessionNotFound) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(unwrap(exc))})


@app.exception_handler(RecordingNotFound)
async def _recording_not_found(_: Request, exc: RecordingNotFound) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(unwrap(exc))})


@app.exception_handler(RecordingInProgress)
async def _recording_in_progress(_: Request, exc: RecordingInProgress) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": str(unwrap(exc))})


@app.exception_handler(PoolFull)
async def _pool_full(_: Request, exc: PoolFull) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": str(unwrap(exc))},
                        headers={"Retry-After": "5"})


@app.exception_handler(RequestValidationError)
async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    message = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in errors
    )
    return JSONResponse(
        status_code=422,
        content={"detail": orjson.loads(orjson.dumps(errors, default=str)), "message": message},
    )


# Module helpers sit above the deployment: Serve captures the class when it is decorated.
async def _refuse(websocket: WebSocket, code: CloseCode, reason: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(Error(code=code, message=reason).model_dump_json())
        await websocket.close(code, reason[:120])


async def _read_hello(websocket: WebSocket, timeout_s: float) -> Hello | None:
    """The client's hello, or None after closing the socket with the reason why."""
    try:
        message = await asyncio.wait_for(websocket.receive(), timeout_s)
    except TimeoutError:
        await _refuse(websocket, CloseCode.HELLO_TIMEOUT, f"no hello within {timeout_s:g} s")
        return None
    except (WebSocketDisconnect, RuntimeError):
        return None  # gone before saying hello
    if message["type"] == "websocket.disconnect":
        return None
    raw = message.get("text")
    if raw is None:
        await _refuse(websocket, CloseCode.BAD_HELLO, "the hello must be a text message")
        return None
    try:
        hello = CLIENT_MESSAGE.validate_json(raw)
    except ValidationError as exc:
        await _refuse(websocket, CloseCode.BAD_HELLO, f"bad hello: {exc.errors()[0]['msg']}")
        return None
    if not isinstance(hello, Hello):
        await _refuse(websocket, CloseCode.BAD_HELLO, "the first message must be a hello")
        return None
    if hello.protocol != PROTOCOL_VERSION:
        await _refuse(websocket, CloseCode.BAD_HELLO,
                      f"protocol {hello.protocol} unsupported; this server speaks "
                      f"{PROTOCOL_VERSION}")
        return None
    return hello


async def _receive(websocket: WebSocket, on_ack: Callable[[int], None]) -> None:
    """Reads acks until the client leaves (a handler that only sends would never notice)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        try:
            parsed = CLIENT_MESSAGE.validate_json(message.get("text") or b"")
        except ValidationError as exc:
            await _refuse(websocket, CloseCode.BAD_HELLO,
                          f"bad message: {exc.errors()[0]['msg']}")
            return
        if not isinstance(parsed, Ack):
            await _refuse(websocket, CloseCode.BAD_HELLO, "after hello only acks are accepted")
            return
        on_ack(parsed.seq)


async def _closing_on_failure(websocket: WebSocket, work: Awaitable[None], what: str,
                              session_id: str) -> None:
    """Runs an accepted socket's handler; a failure closes the socket with 1011 and a
    reason. Without this the server drops the TCP connection and the viewer sees 1006
    with no reason; it reconnects either way, and nothing recorded is lost."""
    try:
        await work
    except (WebSocketDisconnect, asyncio.CancelledError):
        raise
    except Exception as exc:
        _log.exception("%s: %s", what, exc, extra={"session_id": session_id})
        await _refuse(websocket, CloseCode.INTERNAL_ERROR,
                      f"internal error: {type(exc).__name__}")


async def _replay_then_end(websocket: WebSocket, frames: bytes) -> None:
    await replay_frames(websocket, frames)
    with contextlib.suppress(Exception):
        await websocket.send_text(End(reason="stopped", state="stopped").model_dump_json())
        await websocket.close(CloseCode.SESSION_ENDED, "recording replayed")


async def _until_first_done(*coros: Any) -> None:
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, (WebSocketDisconnect, RuntimeError)):
                raise exc
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@serve.deployment(ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": _REPLICA_ENV}})
@serve.ingress(app)
class Gateway:
    def __init__(self, settings: Settings) -> None:
        configure_logging()
        self._settings = settings
        self._metrics = GatewayMetrics()
        self._registry = get_or_create_registry(settings)
        self._registry.keep_warm.remote()
        self._hubs: dict[str, SessionHub] = {}
        self._viewers = 0  # open viewer streams on this replica
        self._closing: set[asyncio.Task[None]] = set()
        self._assets = assets_dir(settings)
        if (self._assets / "index.html").exists():
            app.mount("/static", StaticFiles(directory=self._assets), name="static")

    # -- REST ------------------------------------------------------------------------------

    @app.post("/sessions", status_code=201, response_model=SessionInfo,
              responses={503: {"description": "No browser slot free (RRSTREAM_WHEN_FULL=refuse)"}})
    async def create_session(self, spec: SessionSpec, request: Request) -> SessionInfo:
        """Starts a browser session on `url` and runs `steps` in order. When every browser
        slot is taken it waits in line (`state` pending, `queue_position`), or is refused."""
        record = await self._registry.create.remote(spec)
        return session_info(record, None, None, self._base(request))

    @app.get("/sessions", response_model=list[SessionInfo])
    async def list_sessions(self, request: Request) -> list[SessionInfo]:
        described = await self._registry.describe_all.remote()
        base = self._base(request)
        return [session_info(r, st, sx, base) for r, st, sx in described]

    @app.get("/sessions/{session_id}", response_model=SessionInfo)
    async def get_session(self, session_id: str, request: Request) -> SessionInfo:
        record, status, stats = await self._registry.describe.remote(session_id)
        return session_info(record, status, stats, self._base(request))

    @app.delete("/sessions/{session_id}", response_model=SessionInfo)
    async def stop_session(self, session_id: str, request: Request) -> SessionInfo:
        """Stops the session; stopping an ended session is not an error."""
        await self._registry.stop.remote(session_id)
        return await self.get_session(session_id, request)

    # The seed's demo API, kept as it was documented.

    @app.post("/demo/start", response_model=SessionInfo)
    async def demo_start(self, request: Request) -> SessionInfo:
        """Starts the built-in demo workflow on the bundled demo site."""
        record = await self._registry.create.remote(SessionSpec(demo=True, name="demo"))
        return session_info(record, None, None, self._base(request))

    @app.get("/demo/status/{session_id}", response_model=SessionInfo)
    async def demo_status(self, session_id: str, request: Request) -> SessionInfo:
        return await self.get_session(session_id, request)

    @app.post("/demo/stop/{session_id}", response_model=SessionInfo)
    async def demo_stop(self, session_id: str, request: Request) -> SessionInfo:
        return await self.stop_session(session_id, request)

    @app.get("/pool", response_model=PoolStatus)
    async def pool(self) -> PoolStatus:
        """The browser pool: nodes, slots used and free, sessions per node, the queue."""
        return await self._registry.pool.remote()

    @app.get("/recordings", response_model=list[RecordingInfo])
    async def list_recordings(self) -> list[RecordingInfo]:
        """Every stored recording, on every node, newest first."""
        return await self._registry.recordings.remote()

    @app.get("/recordings/{recording_id}", response_model=RecordingInfo,
             responses={404: {"description": "No such recording"}})
    async def get_recording(self, recording_id: str) -> RecordingInfo:
        return await self._registry.recording.remote(recording_id)

    @app.delete("/recordings/{recording_id}", status_code=204,
                responses={404: {"description": "No such recording"},
                           409: {"description": "Its session is still recording"}})
    async def delete_recording(self, recording_id: str) -> Response:
        await self._registry.delete_recording.remote(recording_id)
        return Response(status_code=204)

    @app.get("/recordings/{recording_id}/frames", response_class=Response,
             responses={200: {"content": {"application/octet-stream": {}},
                              "description": "Records of a 4-byte little-endian length "
                              "and one protocol v1 binary frame (docs/protocol.md)"},
                        404: {"description": "No such recording"}})
    async def recording_frames(self, recording_id: str) -> Response:
        """The recording's stored frames, as its node wrote them."""
        host = await self._registry.recording_host.remote(recording_id)
        frames = await host.recording_frames.remote(recording_id)
        return Response(frames, media_type="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="{recording_id}.frames"'})

    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        hubs = self._hubs.values()
        return {"ok": True, "hubs": len(self._hubs),
                "viewers": sum(h.viewer_count for h in hubs),
                "deepest_viewer_queue": max((h.deepest_queue for h in hubs), default=0)}

    @app.get("/", include_in_schema=False)
    async def index(self) -> Any:
        index = self._assets / "index.html"
        if not index.exists():
            return JSONResponse(status_code=503, content={
                "detail": f"viewer not built at {self._assets}; run scripts/setup.sh"})
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    # -- WebSocket -------------------------------------------------------------------------

    @app.websocket("/sessions/{session_id}/stream")
    async def stream(self, websocket: WebSocket, session_id: str) -> None:
        """Streams one session to one viewer (protocol: docs/protocol.md)."""
        await self._serve_viewer(websocket, session_id)

    @app.websocket("/demo/stream")
    async def demo_stream(self, websocket: WebSocket) -> None:
        """The seed's stream endpoint: `?session_id=`, else the newest live demo session."""
        session_id = websocket.query_params.get("session_id")
        if not session_id:
            records = await self._registry.list.remote()
            demos = [r for r in records if r.spec.demo and not r.state.ended]
            session_id = max(demos, key=lambda r: r.created_at).id if demos else ""
        await self._serve_viewer(websocket, session_id)

    @app.websocket("/recordings/{recording_id}/stream")
    async def replay_recording(self, websocket: WebSocket, recording_id: str) -> None:
        """Replays a stored recording in real time over protocol v1 (docs/protocol.md)."""
        await websocket.accept()
        await _closing_on_failure(websocket, self._replay_to(websocket, recording_id),
                                  f"replay of recording {recording_id}", recording_id)

    async def _replay_to(self, websocket: WebSocket, recording_id: str) -> None:
        try:
            host = await self._registry.recording_host.remote(recording_id)
            info = await host.recording.remote(recording_id)
        except RecordingNotFound as exc:
            await _refuse(websocket, CloseCode.UNKNOWN_SESSION, str(unwrap(exc)))
            return
        hello = await _read_hello(websocket, self._settings.hello_timeout_s)
        if hello is None:
            return
        frames = await host.recording_frames.remote(recording_id)
        await websocket.send_text(Welcome(session_id=recording_id, codec=info.codec,
                                          resume="reset", state="stopped").model_dump_json())
        # Acks are read and ignored: a replay is paced by the clock, not by the viewer.
        await _until_first_done(_replay_then_end(websocket, frames),
                                _receive(websocket, lambda seq: None))

    async def _serve_viewer(self, websocket: WebSocket, session_id: str) -> None:
        await websocket.accept()
        await _closing_on_failure(websocket, self._stream_to(websocket, session_id),
                                  f"viewer of session {session_id}", session_id)

    async def _stream_to(self, websocket: WebSocket, session_id: str) -> None:
        try:
            await self._registry.get.remote(session_id)
        except SessionNotFound as exc:
            await _refuse(websocket, CloseCode.UNKNOWN_SESSION, str(unwrap(exc)))
            return
        hello = await _read_hello(websocket, self._settings.hello_timeout_s)
        if hello is None:
            return
        try:
            streamer = await self._wait_for_stream(websocket, session_id)
        except StreamUnavailable as exc:
            gone = unwrap(exc)
            with contextlib.suppress(Exception):
                await websocket.send_text(End(reason="failed" if gone.state == "failed" else
                                              "stopped", state=gone.state).model_dump_json())
                await websocket.close(CloseCode.SESSION_ENDED, str(gone)[:120])
            return
        hub = self._hub(session_id, streamer)
        viewer, continues = await hub.attach(hello.resume_after)
        self._viewers += 1
        self._metrics.viewers(self._viewers)
        if hello.acks:
            viewer.use_acks(self._settings.viewer_window_bytes)
        try:
            codec = await streamer.streamer.codec.remote(session_id)
            await websocket.send_text(Welcome(
                session_id=session_id, codec=codec, resume="continue" if continues else "reset",
                state=hub.status.state,
            ).model_dump_json())
            await _until_first_done(
                self._send(websocket, session_id, hub, viewer), _receive(websocket, viewer.ack)
            )
        finally:
            hub.detach(viewer)
            self._viewers -= 1
            self._metrics.viewers(self._viewers)

    async def _wait_for_stream(self, websocket: WebSocket, session_id: str) -> Any:
        """The session's streamer; while the session waits for a browser slot, the viewer
        hears so once a second."""
        while True:
            try:
                return await self._registry.streamer.remote(session_id, 1.0)
            except TimeoutError:
                record = await self._registry.get.remote(session_id)
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
                data = encode_frame(session_id, frame, reset=reset)
                await websocket.send_bytes(data)
                viewer.sent(frame[-1].seq, len(data))
                self._metrics.latency(frame[-1].last_ts)
            now = loop.time()
            if now - last_status >= _STATUS_EVERY_S:
                await websocket.send_text(hub.status_json)
                last_status = now
            if delivery.end is not None:
                await websocket.send_text(delivery.end.model_dump_json())
                await websocket.close(CloseCode.SESSION_ENDED, f"session {delivery.end.reason}")
                return

    def _hub(self, session_id: str, streamer: Any) -> SessionHub:
        hub = self._hubs.get(session_id)
        if hub is not None and hub.ended and streamer != hub.stream:
            self._drop_hub(hub)  # the session was restarted on another node since
            hub = None
        if hub is None:
            hub = SessionHub(session_id, streamer, self._registry,
                             self._settings.viewer_queue_frames, self._drop_hub)
            self._hubs[session_id] = hub
        return hub

    def _drop_hub(self, hub: SessionHub) -> None:
        if self._hubs.get(hub.session_id) is hub:
            del self._hubs[hub.session_id]
        task = asyncio.create_task(hub.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _base(self, request: Request) -> str:
        return (self._settings.public_url or str(request.base_url)).rstrip("/")


__all__ = ["Gateway", "app"]
