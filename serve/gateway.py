"""The Ray Serve ingress: REST API, WebSocket streams, and the static viewer.

(No `from __future__ import annotations` here: FastAPI reads these signatures at run
time through Serve's wrappers, which cannot resolve string annotations.)

It holds no session state: the registry actor knows the sessions, the streamer actors
hold the streams, so any replica can serve any viewer of any session, and a viewer whose
replica died reconnects to another and resumes. Serve's controller supervises the
replicas (RRSTREAM_GATEWAY_REPLICAS of them) and replaces one that dies.
"""


from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security, WebSocket
from fastapi.responses import FileResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from ray import serve
from starlette.exceptions import HTTPException

from pipeline.config import Settings
from pipeline.errors import RegistryUnavailable
from pipeline.logs import configure_logging
from pipeline.metrics import GatewayMetrics
from pipeline.models import (
    PoolStatus,
    RecordingInfo,
    SessionInfo,
    SessionRecord,
    SessionSpec,
    ViewerLink,
    ViewerLinkRequest,
)
from pipeline.recorder import assets_dir
from pipeline.registry_actor import get_or_create_registry
from serve.access import Access
from serve.errors import error_answer, error_response, install_error_handlers, responses
from serve.info import session_info
from serve.registry_client import RegistryClient
from serve.start_urls import StartUrlCheck
from serve.uvicorn_options import close_with_reason_on_shutdown, disable_permessage_deflate
from serve.viewer_socket import ViewerSockets

# Serve runs a replica's handlers on a thread of their own by default, and every message
# a WebSocket sends then crosses to uvicorn's loop and back; on the server's loop, sends
# cost less and a slow socket holds back only its own sender.
_REPLICA_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}

app = FastAPI(
    title="rrstream",
    description="Live streaming of real browser sessions to web viewers, built on Ray. "
    "Every error answers `{\"message\": …, \"detail\": …}`.",
    version="0.1.0",
)
install_error_handlers(app)

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                               description="An API key, as a header of its own.")


async def api_caller(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key_header)],
) -> str:
    """Who calls: one of our API keys (401 without one when auth is required), else the
    client's address."""
    access: Access = request.app.state.access
    client = request.client
    return access.caller(f"Bearer {bearer.credentials}" if bearer else None, api_key,
                         client.host if client else None, request.headers)


_KEYED = [Depends(api_caller)]  # routes that need an API key when auth is required


@serve.deployment(ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": _REPLICA_ENV}})
@serve.ingress(app)
class Gateway:
    def __init__(self, settings: Settings) -> None:
        # Here, not at import: the replica gets this class by value and never imports
        # this module; the replica's uvicorn server starts after this constructor.
        disable_permessage_deflate()
        close_with_reason_on_shutdown()
        configure_logging()
        self._settings = settings
        # Which replica answered: /healthz says so, so one can tell the replicas behind
        # the ingress apart (and find the one a viewer is on).
        self._replica = serve.get_replica_context().replica_id.unique_id
        self._access = Access(settings)
        app.state.access = self._access
        self._registry = RegistryClient(get_or_create_registry(settings))
        self._start_urls = StartUrlCheck(settings)
        self._sockets = ViewerSockets(settings, self._registry, GatewayMetrics(), self._access)
        self._assets = assets_dir(settings)
        if (self._assets / "index.html").exists():
            app.mount("/static", StaticFiles(directory=self._assets), name="static")

    # -- REST ------------------------------------------------------------------------------

    @app.post("/sessions", status_code=201, response_model=SessionInfo,
              responses=responses(401, 422, 429, 503))
    async def create_session(self, spec: SessionSpec, request: Request,
                             caller: Annotated[str, Depends(api_caller)]) -> SessionInfo:
        """Starts a browser session on `url` and runs `steps` in order. When every browser
        slot is taken it waits in line (`state` pending, `queue_position`), or is refused.
        The answer's `view_link` opens it in the viewer for an hour. A start URL on an
        inside address is refused (422) while private networks are blocked
        (RRSTREAM_BLOCK_PRIVATE_NETWORKS)."""
        return await self._create(spec, request, caller)

    async def _create(self, spec: SessionSpec, request: Request, caller: str) -> SessionInfo:
        refusal = self._access.limits.session_creation(caller)
        if refusal is not None:
            raise HTTPException(429, refusal.message,
                                headers={"Retry-After": str(refusal.retry_after_s)})
        await self._start_urls.check(spec)
        record = await self._registry.create(spec)
        base = self._base(request)
        info = session_info(record, None, None, base)
        ttl = min(3_600, spec.max_duration_s + self._settings.ended_retention_s)
        link = self._session_link(record, base, ViewerLinkRequest(ttl_s=int(ttl)))
        return info.model_copy(update={"view_link": link})

    def _session_link(self, record: SessionRecord, base: str,
                      request: ViewerLinkRequest) -> ViewerLink:
        return self._access.session_link(base, record.id, record.link_generation,
                                         record.spec.max_duration_s, request)

    @app.post("/sessions/{session_id}/viewer-links", status_code=201,
              response_model=ViewerLink, dependencies=_KEYED,
              responses=responses(401, 404, 422, 503))
    async def session_viewer_link(self, session_id: str, body: ViewerLinkRequest,
                                  request: Request) -> ViewerLink:
        """A link that opens the session in the viewer, with a token of `role` for `ttl_s`
        (at most the session's max duration plus the ended-session retention)."""
        record = await self._registry.get(session_id)
        return self._session_link(record, self._base(request), body)

    @app.post("/sessions/{session_id}/viewer-links/revoke", status_code=204,
              dependencies=_KEYED, responses=responses(401, 404, 503))
    async def revoke_viewer_links(self, session_id: str) -> Response:
        """Every link of the session minted so far stops working; sockets that hold one
        close within 5 s (4401). Links minted afterwards work."""
        await self._registry.revoke_links(session_id)
        return Response(status_code=204)

    @app.get("/sessions", response_model=list[SessionInfo], dependencies=_KEYED,
             responses=responses(401, 503))
    async def list_sessions(self, request: Request) -> list[SessionInfo]:
        described = await self._registry.describe_all()
        base = self._base(request)
        return [session_info(r, st, sx, base) for r, st, sx in described]

    @app.get("/sessions/{session_id}", response_model=SessionInfo, dependencies=_KEYED,
             responses=responses(401, 404, 503))
    async def get_session(self, session_id: str, request: Request) -> SessionInfo:
        record, status, stats = await self._registry.describe(session_id)
        return session_info(record, status, stats, self._base(request))

    @app.delete("/sessions/{session_id}", response_model=SessionInfo, dependencies=_KEYED,
                responses=responses(401, 404, 503))
    async def stop_session(self, session_id: str, request: Request) -> SessionInfo:
        """Stops the session within 5 s, by force if its page does not let go; stopping an
        ended session is not an error."""
        await self._registry.stop(session_id)
        return await self.get_session(session_id, request)

    # The seed's demo API, kept as it was documented.

    @app.post("/demo/start", response_model=SessionInfo,
              responses=responses(401, 429, 503))
    async def demo_start(self, request: Request,
                         caller: Annotated[str, Depends(api_caller)]) -> SessionInfo:
        """Starts the built-in demo workflow on the bundled demo site."""
        return await self._create(SessionSpec(demo=True, name="demo"), request, caller)

    @app.get("/demo/status/{session_id}", response_model=SessionInfo, dependencies=_KEYED,
             responses=responses(401, 404, 503))
    async def demo_status(self, session_id: str, request: Request) -> SessionInfo:
        return await self.get_session(session_id, request)

    @app.post("/demo/stop/{session_id}", response_model=SessionInfo, dependencies=_KEYED,
              responses=responses(401, 404, 503))
    async def demo_stop(self, session_id: str, request: Request) -> SessionInfo:
        return await self.stop_session(session_id, request)

    @app.get("/pool", response_model=PoolStatus, dependencies=_KEYED,
             responses=responses(401, 503))
    async def pool(self) -> PoolStatus:
        """The browser pool: nodes, slots used and free, each node's actors (alive,
        restarting, dead or not created), sessions per node, the queue."""
        return await self._registry.pool()

    @app.get("/recordings", response_model=list[RecordingInfo], dependencies=_KEYED,
             responses=responses(401, 503))
    async def list_recordings(self) -> list[RecordingInfo]:
        """Every stored recording, on every node, newest first."""
        return await self._registry.recordings()

    @app.get("/recordings/{recording_id}", response_model=RecordingInfo, dependencies=_KEYED,
             responses=responses(401, 404, 503))
    async def get_recording(self, recording_id: str) -> RecordingInfo:
        return await self._registry.recording(recording_id)

    @app.post("/recordings/{recording_id}/viewer-links", status_code=201,
              response_model=ViewerLink, dependencies=_KEYED,
              responses=responses(401, 404, 422, 503))
    async def recording_viewer_link(self, recording_id: str, body: ViewerLinkRequest,
                                    request: Request) -> ViewerLink:
        """A link that replays the recording in the viewer (also once its session is
        gone), for `ttl_s` (at most 7 days)."""
        await self._registry.recording(recording_id)
        return self._access.recording_link(self._base(request), recording_id, body)

    @app.delete("/recordings/{recording_id}", status_code=204, dependencies=_KEYED,
                responses=responses(401, 404, 409, 503))
    async def delete_recording(self, recording_id: str) -> Response:
        await self._registry.delete_recording(recording_id)
        return Response(status_code=204)

    @app.get("/recordings/{recording_id}/frames", response_class=Response,
             responses={200: {"content": {"application/octet-stream": {}},
                              "description": "Records of a 4-byte little-endian length "
                              "and one protocol v1 binary frame (docs/protocol.md)"},
                        **responses(401, 404, 503)}, dependencies=_KEYED)
    async def recording_frames(self, recording_id: str) -> Response:
        """The recording's stored frames, as its node wrote them."""
        streamer = await self._registry.recording_streamer(recording_id)
        frames = await streamer.recording_frames.remote(recording_id)
        return Response(frames, media_type="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="{recording_id}.frames"'})

    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        """This replica is alive (it says nothing of the registry: see /readyz): which
        replica answered, and its viewers."""
        return {"ok": True, "replica": self._replica, **self._sockets.health()}

    @app.get("/readyz", responses={503: error_answer(503, "Not ready; `message` says why")})
    async def readyz(self) -> Any:
        """200 when the registry answers and the pool has a browser slot on a live node."""
        try:
            reason = await self._registry.ready()
        except RegistryUnavailable as exc:
            reason = str(exc)
        if reason is not None:
            return error_response(503, f"not ready: {reason}", headers={"Retry-After": "2"})
        return {"ok": True}

    @app.get("/", include_in_schema=False)
    async def index(self) -> Any:
        index = self._assets / "index.html"
        if not index.exists():
            return error_response(503, f"viewer not built at {self._assets}; run "
                                  "scripts/setup.sh")
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    # -- WebSocket -------------------------------------------------------------------------

    @app.websocket("/sessions/{session_id}/stream")
    async def stream(self, websocket: WebSocket, session_id: str) -> None:
        """Streams one session to one viewer (protocol: docs/protocol.md)."""
        await self._sockets.live(websocket, session_id)

    @app.websocket("/demo/stream")
    async def demo_stream(self, websocket: WebSocket) -> None:
        """The seed's stream endpoint: `?session_id=`, else the newest live demo session."""
        session_id = websocket.query_params.get("session_id")
        if not session_id:
            records = await self._registry.list()
            demos = [r for r in records if r.spec.demo and not r.state.ended]
            session_id = max(demos, key=lambda r: r.created_at).id if demos else ""
        await self._sockets.live(websocket, session_id)

    @app.websocket("/recordings/{recording_id}/stream")
    async def replay_recording(self, websocket: WebSocket, recording_id: str) -> None:
        """Replays a stored recording in real time over protocol v1 (docs/protocol.md)."""
        await self._sockets.replay(websocket, recording_id)

    async def __del__(self) -> None:
        """Serve calls this once the replica has drained (uvicorn closed every viewer
        with 1012 and the reason why)."""
        await self._sockets.close()

    def _base(self, request: Request) -> str:
        return (self._settings.public_url or str(request.base_url)).rstrip("/")


__all__ = ["Gateway", "app"]
