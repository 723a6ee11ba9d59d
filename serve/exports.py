"""The export routes: `POST /recordings/{id}/exports` starts a job, `GET …/exports/{job}`
shows it, `GET …/exports/{job}/file` is its file once done (docs/architecture.md,
"Exports").

(No `from __future__ import annotations`: FastAPI reads these signatures at run time.)

The routes hold nothing themselves: the jobs are in the `exports` actor, so any gateway
replica answers alike. `mount_exports` adds them to the gateway's app; the gateway sets
`app.state.exports` to an ExportService over its registry client. Unit tests build a
small app with fakes behind the same Protocols (tests/unit/test_export_api.py).
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.params import Depends
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from pipeline.config import Settings
from pipeline.errors import RecordingInProgress, RecordingNotFound, SessionNotFound, unwrap
from pipeline.export.errors import (
    ExportError,
    ExportFileGone,
    ExportNotFound,
    ExportNotReady,
    ExportsUnavailable,
    TooManyExports,
)
from pipeline.export.files import CHUNK_BYTES
from pipeline.export.models import ExportJob, ExportRequest, ExportState
from pipeline.export.source import export_path
from pipeline.models import RecordingInfo, SessionRecord
from pipeline.recording_store import RecordingStore
from serve.errors import error_answer, error_response

_T = TypeVar("_T")
CALL_TIMEOUT_S = 10.0
_RETRY_AFTER_S = {TooManyExports: 5, ExportsUnavailable: 2}


class Recordings(Protocol):
    """What the routes ask of the registry (serve/registry_client.py)."""

    async def recording(self, recording_id: str) -> RecordingInfo: ...

    async def get(self, session_id: str) -> SessionRecord: ...


class Jobs(Protocol):
    """What the routes ask of the jobs actor (ExportsClient, or a fake)."""

    async def submit(self, recording_id: str, request: ExportRequest) -> ExportJob: ...

    async def get(self, recording_id: str, job_id: str) -> ExportJob: ...


class Files(Protocol):
    """Where an export's file is read from (pipeline/export/files.py)."""

    def local(self, node_id: str | None, path: Path) -> Path | None: ...

    def pieces(self, job_id: str, node_id: str, path: Path, size: int) -> AsyncIterator[bytes]: ...


class ExportsClient:
    """The gateway's calls to the `exports` actor, each with a deadline: an actor that does
    not answer is ExportsUnavailable (503, Retry-After), never a hung request."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def _ask(self, call: Awaitable[_T]) -> _T:
        from ray.exceptions import RayActorError, RayTaskError

        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await call
        except RayTaskError as exc:  # its own answer: ExportNotFound, TooManyExports
            raise unwrap(exc) from None
        except RayActorError as exc:
            raise ExportsUnavailable("Ray is restarting it") from exc
        except TimeoutError as exc:
            raise ExportsUnavailable(f"no answer within {CALL_TIMEOUT_S:g} s") from exc

    async def submit(self, recording_id: str, request: ExportRequest) -> ExportJob:
        return await self._ask(self._handle.submit.remote(recording_id, request))

    async def get(self, recording_id: str, job_id: str) -> ExportJob:
        return await self._ask(self._handle.get.remote(recording_id, job_id))


class ExportService:
    def __init__(self, recordings: Recordings, jobs: Jobs, files: Files,
                 settings: Settings, store: RecordingStore | None = None) -> None:
        """`store`: the recording store the cluster shares, where finished exports are
        (pipeline/export/source.py); without one they stay on the node that made them."""
        self._recordings = recordings
        self._jobs = jobs
        self._files = files
        self._settings = settings
        self._store = store

    @classmethod
    def over_ray(cls, recordings: Recordings, settings: Settings,
                 store: RecordingStore | None = None) -> "ExportService":
        """The gateway's: the `exports` actor (made on first use), files read from the
        shared store or from any node."""
        from pipeline.export.actor import get_or_create_exports
        from pipeline.export.files import ExportFiles

        return cls(recordings, ExportsClient(get_or_create_exports(settings)), ExportFiles(),
                   settings, store)

    def base_url(self, request_base: str) -> str:
        """The API's base in the URLs it hands out: RRSTREAM_PUBLIC_URL, else the request's."""
        return (self._settings.public_url or request_base).rstrip("/")

    async def create(self, recording_id: str, request: ExportRequest, base: str) -> ExportJob:
        info = await self._recordings.recording(recording_id)
        if info.ended_at is None and await self._still_recording(recording_id):
            raise RecordingInProgress(recording_id)
        return self._shown(await self._jobs.submit(recording_id, request), base)

    async def status(self, recording_id: str, job_id: str, base: str) -> ExportJob:
        await self._recordings.recording(recording_id)
        return self._shown(await self._jobs.get(recording_id, job_id), base)

    async def file(self, recording_id: str, job_id: str) -> Response:
        await self._recordings.recording(recording_id)
        job = await self._jobs.get(recording_id, job_id)
        if job.state is not ExportState.DONE:
            detail = job.error if job.state is ExportState.FAILED else \
                f"{job.progress:.0%} done, no file yet"
            raise ExportNotReady(job.id, job.state.value, detail or "no file")
        path = export_path(self._settings, recording_id, job.id, job.request.extension)
        name = f"{recording_id}-{job.id}.{job.request.extension}"
        if job.size_bytes is None:
            raise ExportFileGone(job.id, "its size is not known")
        pieces: AsyncIterator[bytes]
        if self._store is not None:
            pieces = _stored_pieces(self._store, recording_id, job.id, path.name, job.size_bytes)
        else:
            local = self._files.local(job.node_id, path)
            if local is not None:
                return FileResponse(local, media_type=job.media_type, filename=name)
            if job.node_id is None:
                raise ExportFileGone(job.id, "its node is not known")
            pieces = self._files.pieces(job.id, job.node_id, path, job.size_bytes)
        # The first piece before the answer starts: a file that is gone is a 404, not a
        # 200 cut short.
        try:
            first = await anext(pieces)
        except StopAsyncIteration:
            first = b""
        return StreamingResponse(_prepend(first, pieces), media_type=job.media_type, headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Length": str(job.size_bytes)})

    async def _still_recording(self, recording_id: str) -> bool:
        """Its session is still running (a recording whose session ended long ago or
        died unfinished is exported as far as it goes)."""
        try:
            record = await self._recordings.get(recording_id)
        except SessionNotFound:
            return False
        return not record.state.ended

    def _shown(self, job: ExportJob, base: str) -> ExportJob:
        if job.state is not ExportState.DONE:
            return job
        return job.model_copy(update={
            "file_url": f"{base}/recordings/{job.recording_id}/exports/{job.id}/file"})


async def _stored_pieces(store: RecordingStore, recording_id: str, job_id: str, name: str,
                         size: int) -> AsyncIterator[bytes]:
    """An export's file in the shared store, a piece at a time."""
    for offset in range(0, size, CHUNK_BYTES):
        try:
            yield await asyncio.to_thread(store.export_piece, recording_id, name, offset,
                                          CHUNK_BYTES)
        except RecordingNotFound:
            raise ExportFileGone(job_id, "it is no longer in the recording store") from None


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for piece in rest:
        yield piece


# -- routes ----------------------------------------------------------------------------------

_STATUS = {ExportNotFound: 404, ExportFileGone: 404, ExportNotReady: 409,
           TooManyExports: 429, ExportsUnavailable: 503}
_ERRORS = {
    401: error_answer(401),
    404: error_answer(404, "No such recording, or no such export of it (or its file is "
                      "gone)"),
    409: error_answer(409, "The recording is still being written (its session runs), or "
                      "the export is not done (its state and progress, or why it failed)"),
    422: error_answer(422, "The request is malformed: `message` names the field (a format "
                      "other than webm or png, negative times, `end_ms` not after "
                      "`start_ms`, a size past 3840x2160, options of the other format)"),
    429: error_answer(429, "Too many exports queued or running (RRSTREAM_EXPORT_MAX_"
                      "UNFINISHED, RRSTREAM_EXPORT_MAX_PER_RECORDING); see Retry-After"),
    503: error_answer(503, "The session registry or the export service is being "
                      "restarted; see Retry-After"),
}
router = APIRouter(tags=["exports"])


def _service(request: Request) -> ExportService:
    return request.app.state.exports


def _base(request: Request) -> str:
    return _service(request).base_url(str(request.base_url))


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: _ERRORS[status] for status in sorted({*statuses, 422})}


@router.post("/recordings/{recording_id}/exports", status_code=202, response_model=ExportJob,
             responses=_errors(401, 404, 409, 429, 503))
async def create_export(recording_id: str, body: ExportRequest, request: Request) -> ExportJob:
    """Starts exporting the recording as a WebM video (VP8; 1280x800 at 10 fps by default)
    or as one PNG at `at_ms`: 202 and the job; follow it at `GET …/exports/{job}`. The
    recording is replayed in headless Chromium by a Ray task at a lower CPU priority than
    live sessions, at most RRSTREAM_EXPORT_SLOTS at once per node. The same recording and
    request make the same frames every time."""
    return await _service(request).create(recording_id, body, _base(request))


@router.get("/recordings/{recording_id}/exports/{job_id}", response_model=ExportJob,
            responses=_errors(401, 404, 503))
async def get_export(recording_id: str, job_id: str, request: Request) -> ExportJob:
    """The job: `state` (queued, running, done, failed), `progress` 0..1, `frames`, `error`
    in words when it failed, and `file_url` once done."""
    return await _service(request).status(recording_id, job_id, _base(request))


@router.get("/recordings/{recording_id}/exports/{job_id}/file", response_class=Response,
            responses={200: {"content": {"video/webm": {}, "image/png": {}},
                             "description": "The export's file (an attachment)"},
                       **_errors(401, 404, 409, 503)})
async def get_export_file(recording_id: str, job_id: str, request: Request) -> Response:
    """The export's file once its job is done: `video/webm` or `image/png`."""
    return await _service(request).file(recording_id, job_id)


async def _export_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ExportError)
    status = next((s for kind, s in _STATUS.items() if isinstance(exc, kind)), 500)
    retry = next((s for kind, s in _RETRY_AFTER_S.items() if isinstance(exc, kind)), None)
    return error_response(status, str(exc),
                          headers={"Retry-After": str(retry)} if retry else None)


def mount_exports(app: FastAPI, dependencies: Sequence[Depends] = ()) -> None:
    """Adds the export routes (each with `dependencies`: the API key check) and their
    errors' answers to `app`."""
    app.include_router(router, dependencies=list(dependencies))
    app.add_exception_handler(ExportError, _export_error)


__all__ = ["ExportService", "ExportsClient", "mount_exports", "router"]
