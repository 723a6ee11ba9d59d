"""The Ray Serve ingress: REST API, WebSocket streams, and the static viewer.

(No `from __future__ import annotations` here: FastAPI reads these signatures at run
time through Serve's wrappers, which cannot resolve string annotations.)

It holds no session state: the registry actor knows the sessions, the streamer actors
hold the streams, so any replica can serve any viewer of any session, and a viewer whose
replica died reconnects to another and resumes. Serve's controller supervises the
replicas (RRSTREAM_GATEWAY_REPLICAS of them) and replaces one that dies.
"""


from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Security, WebSocket
from fastapi.responses import FileResponse, Response, StreamingResponse
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
    RecordingPage,
    SessionInfo,
    SessionRecord,
    SessionSpec,
    ViewerLink,
    ViewerLinkRequest,
)
from pipeline.recorder import assets_dir
from pipeline.recording_store import RecordingStore
from pipeline.registry_actor import get_or_create_registry
from serve.access import Access, still_valid
from serve.api_keys import presented_key
from serve.assets import AssetService, mount_assets
from serve.errors import error_answer, error_response, install_error_handlers, responses
from serve.exports import ExportService, mount_exports
from serve.info import session_info
from serve.recording_query import DEFAULT_LIMIT, MAX_LIMIT, RecordingQuery
from serve.recording_reader import Recordings, chunks, event_array
from serve.recording_search import (
    DEFAULT_HITS,
    MAX_HITS,
    RecordingSearch,
    SearchQuery,
    SearchResult,
)
from serve.registry_client import RegistryClient
from serve.session_control import SessionControl, mount_session_control
from serve.session_lines import RaySessionLines
from serve.start_urls import StartUrlCheck
from serve.uvicorn_options import close_with_reason_on_shutdown, disable_permessage_deflate
from serve.viewer_socket import ViewerSockets
from serve.viewer_tokens import TokenRefused

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
    key = presented_key(bearer.credentials if bearer else None, api_key)
    return access.caller(key, client.host if client else None, request.headers)


_KEYED = [Depends(api_caller)]  # routes that need an API key when auth is required
mount_exports(app, dependencies=_KEYED)  # POST/GET /recordings/{id}/exports… (serve/exports.py)
mount_assets(app)  # GET /assets/{sha256}, open like the viewer's files (serve/assets.py)
# POST /sessions/{id}/pause, /resume, /steps (serve/session_control.py)
mount_session_control(app, api_caller)


_Text = Annotated[str | None, Query(min_length=1, max_length=200,
                                    description="Part of a text that appeared (any case).")]
# Query strings stay short: 500 characters of a URL, percent-encoded, fit the ingress's
# request line (HAProxy answers a longer one with a 400 of its own, not our JSON).
_Url = Annotated[str | None, Query(min_length=1, max_length=500,
                                   description="Part of a visited URL.")]
_Click = Annotated[str | None, Query(min_length=1, max_length=200, description="Part of a "
                                     "clicked element's CSS selector or text (any case).")]
_Limit = Annotated[int, Query(ge=1, le=MAX_HITS)]


def _once(request: Request, *names: str) -> None:
    """A query parameter given twice is refused, not silently the last one."""
    for name in names:
        if len(request.query_params.getlist(name)) > 1:
            raise HTTPException(422, f"query parameter {name!r} given more than once")


def _search_query(request: Request, text: str | None, url: str | None, click: str | None,
                  limit: int) -> SearchQuery:
    _once(request, "text", "url", "click", "limit")
    if text is None and url is None and click is None:
        raise HTTPException(422, "say what to search for: text, url or click")
    return SearchQuery(text, url, click, limit)


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
        app.state.session_control = SessionControl(self._registry, settings.public_url)
        self._recordings = Recordings(RecordingStore.shared_from_settings(settings),
                                      self._registry)
        app.state.assets = AssetService.over_ray(self._registry,
                                                 self._recordings.shared_store)
        app.state.exports = ExportService.over_ray(self._registry, settings,
                                                   self._recordings.shared_store)
        self._sockets = ViewerSockets(settings, self._registry, GatewayMetrics(), self._access,
                                      self._recordings,
                                      RaySessionLines(self._registry, settings.namespace))
        self._recording_search = RecordingSearch(self._recordings.index_update)
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

    @app.get("/recordings", response_model=RecordingPage, dependencies=_KEYED,
             responses=responses(401, 422, 503))
    async def list_recordings(
        self,
        request: Request,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(max_length=200, description="`next_cursor` "
                                            "of the page before.")] = None,
        name: Annotated[str | None, Query(max_length=200, description="Part of the "
                                          "session's name, in any case.")] = None,
        url: Annotated[str | None, Query(max_length=500, description="Part of a "
                                         "visited URL.")] = None,
        since: Annotated[datetime | None, Query(description="Created at or after (ISO "
                                                "8601 or Unix seconds).")] = None,
        until: Annotated[datetime | None, Query(description="Created before.")] = None,
        has_errors: Annotated[bool | None, Query(description="Only recordings with (or "
                                                 "without) errors: a failed session, a "
                                                 "failed step, an error the page "
                                                 "logged.")] = None,
    ) -> RecordingPage:
        """Stored recordings, newest first, a page at a time."""
        _once(request, "limit", "cursor", "name", "url", "since", "until", "has_errors")
        query = RecordingQuery(limit, cursor, name, url, since, until, has_errors)
        return query.page(await self._recordings.list())

    @app.get("/recordings/{recording_id}", response_model=RecordingInfo,
             responses=responses(401, 403, 404, 503))
    async def get_recording(
            self, recording_id: str,
            bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
            api_key: Annotated[str | None, Security(_api_key_header)]) -> RecordingInfo:
        """One recording's metadata. With an API key, or a viewer token of the recording or
        of its session as the bearer (a viewer opened by a link)."""
        await self._check_reader(recording_id, bearer, api_key)
        return await self._recordings.info(recording_id)

    @app.post("/recordings/{recording_id}/viewer-links", status_code=201,
              response_model=ViewerLink, dependencies=_KEYED,
              responses=responses(401, 404, 422, 503))
    async def recording_viewer_link(self, recording_id: str, body: ViewerLinkRequest,
                                    request: Request) -> ViewerLink:
        """A link that replays the recording in the viewer (also once its session is
        gone), for `ttl_s` (at most 7 days)."""
        await self._recordings.info(recording_id)
        return self._access.recording_link(self._base(request), recording_id, body)

    @app.delete("/recordings/{recording_id}", status_code=204, dependencies=_KEYED,
                responses=responses(401, 404, 409, 503))
    async def delete_recording(self, recording_id: str) -> Response:
        """Deletes the recording with everything made from it (exports, assets)."""
        await self._recordings.delete(recording_id)
        return Response(status_code=204)

    @app.get("/recordings/{recording_id}/events", response_class=StreamingResponse,
             responses={200: {"content": {"application/json": {}},
                              "description": "The recording as one JSON array of rrweb "
                              "events, as rrweb's Replayer and rrweb-player load it"},
                        **responses(401, 403, 404, 503)})
    async def recording_events(
            self, recording_id: str, request: Request,
            bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
            api_key: Annotated[str | None, Security(_api_key_header)]) -> StreamingResponse:
        """Every stored event of the recording, streamed (also while its session still
        runs: what is stored so far, up to its last checkout). With an API key, or a viewer
        token of this recording or of its session as the bearer."""
        await self._check_reader(recording_id, bearer, api_key)
        reader, info = await self._recordings.reader(recording_id)
        return StreamingResponse(event_array(reader, info), media_type="application/json",
                                 headers={"Content-Disposition":
                                          f'inline; filename="{recording_id}.json"'})

    @app.get("/recordings/{recording_id}/frames", response_class=StreamingResponse,
             responses={200: {"content": {"application/octet-stream": {}},
                              "description": "Records of a 4-byte little-endian length "
                              "and one protocol v1 binary frame (docs/protocol.md)"},
                        **responses(401, 403, 404, 503)})
    async def recording_frames(
            self, recording_id: str,
            bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
            api_key: Annotated[str | None, Security(_api_key_header)]) -> StreamingResponse:
        """The recording's stored frames, as they were written, streamed chunk by chunk."""
        await self._check_reader(recording_id, bearer, api_key)
        reader, info = await self._recordings.reader(recording_id)
        return StreamingResponse(chunks(reader, info.chunks),
                                 media_type="application/octet-stream", headers={
                                     "Content-Disposition":
                                     f'attachment; filename="{recording_id}.frames"'})

    @app.get("/search", response_model=SearchResult, dependencies=_KEYED,
             responses=responses(401, 422, 503))
    async def search(self, request: Request, text: _Text = None, url: _Url = None,
                     click: _Click = None, limit: _Limit = DEFAULT_HITS) -> SearchResult:
        """Moments across recordings where a text appeared in the page, a URL was visited
        or an element was clicked (by part of its CSS selector or its text), newest
        recordings first; each hit's `offset_ms` is where the player seeks to. Masked and
        blocked content is never indexed."""
        return await self._recording_search.search(_search_query(request, text, url, click,
                                                                 limit))

    @app.get("/recordings/{recording_id}/search", response_model=SearchResult,
             responses=responses(401, 403, 404, 422, 503))
    async def search_recording(
            self, recording_id: str, request: Request,
            bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
            api_key: Annotated[str | None, Security(_api_key_header)],
            text: _Text = None, url: _Url = None, click: _Click = None,
            limit: _Limit = DEFAULT_HITS) -> SearchResult:
        """The same within one recording, in time order; like its events, with an API key
        or a viewer token of the recording or its session."""
        await self._check_reader(recording_id, bearer, api_key)
        query = _search_query(request, text, url, click, limit)
        await self._recordings.info(recording_id)
        return await self._recording_search.search(query, recording_id)

    async def _check_reader(self, recording_id: str,
                            bearer: HTTPAuthorizationCredentials | None,
                            api_key: str | None) -> None:
        token = bearer.credentials if bearer else None
        claims = self._access.recording_reader(presented_key(token, api_key), token,
                                               recording_id)
        if claims is not None and claims.kind == "session":
            record = await self._registry.get(recording_id)
            try:
                still_valid(claims, record.link_generation)
            except TokenRefused as exc:
                raise HTTPException(401, str(exc)) from None

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
