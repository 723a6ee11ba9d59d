"""The export routes on an app of their own (the API's error handlers, fakes for the
registry, the jobs actor and the files): validation, statuses and the JSON error body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from pipeline.config import Settings
from pipeline.errors import RecordingNotFound, SessionNotFound
from pipeline.export.errors import ExportNotFound, TooManyExports
from pipeline.export.models import ExportJob, ExportRequest, ExportState
from pipeline.export.source import export_path, stored_export
from pipeline.models import RecordingInfo, SessionRecord, SessionSpec, SessionState
from pipeline.recording_store import RecordingStore
from serve.errors import install_error_handlers
from serve.exports import ExportService, mount_exports


class FakeRecordings:
    def __init__(self) -> None:
        self.recordings = {"done": RecordingInfo(id="done", codec="deflate-raw", created_at=1,
                                                 ended_at=2),
                           "live": RecordingInfo(id="live", codec="deflate-raw", created_at=1),
                           "orphan": RecordingInfo(id="orphan", codec="deflate-raw",
                                                   created_at=1)}

    async def recording(self, recording_id: str) -> RecordingInfo:
        if recording_id not in self.recordings:
            raise RecordingNotFound(recording_id)
        return self.recordings[recording_id]

    async def get(self, session_id: str) -> SessionRecord:
        if session_id != "live":
            raise SessionNotFound(session_id)
        return SessionRecord(id="live", spec=SessionSpec(url="https://example.com/"),
                             state=SessionState.RUNNING, created_at=1)


class FakeJobs:
    def __init__(self) -> None:
        self.jobs: dict[str, ExportJob] = {}
        self.full = False

    async def submit(self, recording_id: str, request: ExportRequest) -> ExportJob:
        if self.full:
            raise TooManyExports(16, 16, "in the cluster")
        job = ExportJob(id=f"job{len(self.jobs)}", recording_id=recording_id,
                        request=request.filled(), created_at=3)
        self.jobs[job.id] = job
        return job

    async def get(self, recording_id: str, job_id: str) -> ExportJob:
        job = self.jobs.get(job_id)
        if job is None or job.recording_id != recording_id:
            raise ExportNotFound(recording_id, job_id)
        return job


class LocalFiles:
    def local(self, node_id: str | None, path: Path) -> Path | None:
        return path if path.is_file() else None

    async def pieces(self, job_id: str, node_id: str, path: Path,
                     size: int) -> AsyncIterator[bytes]:
        raise AssertionError("a local file is served from disk")
        yield b""


@pytest.fixture
def jobs() -> FakeJobs:
    return FakeJobs()


@pytest.fixture
async def settings(tmp_path: Path) -> Settings:
    return Settings(recordings_url=str(tmp_path))


@pytest.fixture
async def api(jobs: FakeJobs, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    mount_exports(app)
    app.state.exports = ExportService(FakeRecordings(), jobs, LocalFiles(), settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                 base_url="http://api.test") as http:
        yield http


@pytest.mark.parametrize(("body", "words"), [
    ({"format": "gif"}, "body.format: Input should be 'webm' or 'png'"),
    ({"start_ms": -1}, "body.start_ms: Input should be greater than or equal to 0"),
    ({"start_ms": 5_000, "end_ms": 4_000}, "end_ms (4000) must come after start_ms (5000)"),
    ({"width": 7_680}, "body.width: Input should be less than or equal to 3840"),
    ({"height": 4_320}, "body.height: Input should be less than or equal to 2160"),
    ({"fps": 0}, "body.fps: Input should be greater than or equal to 1"),
    ({"fps": "10"}, "body.fps: Input should be a valid integer"),
    ({"width": 1281}, "a webm's width and height must be even"),
    ({"format": "png", "fps": 5}, "a png is one frame at `at_ms`; fps belong to a webm"),
    ({"at_ms": 100}, "`at_ms` is for a png"),
    ({"speed": 2}, "body.speed: Extra inputs are not permitted"),
], ids=["format", "negative-start", "end-before-start", "too-wide", "too-high", "no-fps",
        "fps-as-text", "odd-width", "png-with-fps", "webm-with-at", "unknown-field"])
async def test_a_bad_request_is_a_422_that_names_the_field(api: httpx.AsyncClient, body: dict,
                                                           words: str) -> None:
    answer = await api.post("/recordings/done/exports", json=body)
    assert answer.status_code == 422, answer.text
    assert set(answer.json()) == {"message", "detail"}
    assert words in answer.json()["message"], answer.json()["message"]


async def test_an_export_is_accepted_and_shown(api: httpx.AsyncClient) -> None:
    answer = await api.post("/recordings/done/exports", json={})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert (job["state"], job["progress"], job["recording_id"]) == ("queued", 0.0, "done")
    assert job["request"] == {"format": "webm", "start_ms": 0, "end_ms": None, "at_ms": None,
                              "width": 1280, "height": 800, "fps": 10}
    png = await api.post("/recordings/done/exports", json={"format": "png", "at_ms": 40,
                                                           "width": 640, "height": 401})
    assert png.status_code == 202 and png.json()["id"] != job["id"]
    assert png.json()["request"]["at_ms"] == 40 and png.json()["request"]["height"] == 401
    shown = await api.get(f"/recordings/done/exports/{job['id']}")
    assert shown.status_code == 200 and shown.json()["file_url"] is None


async def test_the_file_once_done_and_a_409_before(api: httpx.AsyncClient, jobs: FakeJobs,
                                                   settings: Settings) -> None:
    job = (await api.post("/recordings/done/exports", json={"format": "png"})).json()
    early = await api.get(f"/recordings/done/exports/{job['id']}/file")
    assert early.status_code == 409
    assert early.json()["message"] == f"export '{job['id']}' is queued: 0% done, no file yet"

    path = export_path(settings, "done", job["id"], "png")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x89PNG fake")
    jobs.jobs[job["id"]] = jobs.jobs[job["id"]].model_copy(update={
        "state": ExportState.DONE, "progress": 1.0, "node_id": "n", "size_bytes": 9})
    shown = (await api.get(f"/recordings/done/exports/{job['id']}")).json()
    assert shown["file_url"] == f"http://api.test/recordings/done/exports/{job['id']}/file"
    file = await api.get(f"/recordings/done/exports/{job['id']}/file")
    assert file.status_code == 200 and file.content == b"\x89PNG fake"
    assert file.headers["content-type"] == "image/png"
    assert f'filename="done-{job["id"]}.png"' in file.headers["content-disposition"]

    jobs.jobs[job["id"]] = jobs.jobs[job["id"]].model_copy(update={
        "state": ExportState.FAILED, "error": "the renderer crashed"})
    failed = await api.get(f"/recordings/done/exports/{job['id']}/file")
    assert failed.status_code == 409
    assert failed.json()["message"] == (f"export '{job['id']}' failed, so it has no file: "
                                        "the renderer crashed")


async def test_with_a_shared_store_the_file_is_read_from_it_in_pieces(
        jobs: FakeJobs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a shared store the task uploads the file into the recording's folder there
    (stored_export) and any replica serves it from the store; deleting the recording
    deletes it; a file no longer there is a 404 in words."""
    monkeypatch.setattr("serve.exports.CHUNK_BYTES", 4)  # several pieces of a small file
    url = f"memory://exports-{tmp_path.name}"
    settings = Settings(recordings_url=url)
    store = RecordingStore.shared_from_settings(settings)
    assert store is not None and store.shared
    app = FastAPI()
    install_error_handlers(app)
    mount_exports(app)
    app.state.exports = ExportService(FakeRecordings(), jobs, LocalFiles(), settings, store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                 base_url="http://api.test") as api:
        job = (await api.post("/recordings/done/exports", json={"format": "png"})).json()
        made = export_path(settings, "done", job["id"], "png")  # where the task renders
        made.parent.mkdir(parents=True, exist_ok=True)
        made.write_bytes(b"\x89PNG from a shared store")
        where = stored_export(settings, "done", made)
        assert not made.exists(), "the local copy is removed once uploaded"
        assert where == store.path("done", "exports", f"{job['id']}.png")
        jobs.jobs[job["id"]] = jobs.jobs[job["id"]].model_copy(update={
            "state": ExportState.DONE, "progress": 1.0, "node_id": "gone", "size_bytes": 25})
        file = await api.get(f"/recordings/done/exports/{job['id']}/file")
        assert file.status_code == 200 and file.content == b"\x89PNG from a shared store"
        assert file.headers["content-length"] == "25"

        store.delete("done")
        gone = await api.get(f"/recordings/done/exports/{job['id']}/file")
        assert gone.status_code == 404
        assert "no longer in the recording store" in gone.json()["message"]


async def test_refusals_are_json_in_words(api: httpx.AsyncClient, jobs: FakeJobs) -> None:
    live = await api.post("/recordings/live/exports", json={})
    assert live.status_code == 409
    assert live.json()["message"] == ("recording 'live' is still being written; stop its "
                                      "session first")
    # Unfinished, but its session is gone (a node lost with it): exported as far as it goes.
    assert (await api.post("/recordings/orphan/exports", json={})).status_code == 202
    missing = await api.post("/recordings/nope/exports", json={})
    assert missing.status_code == 404
    assert missing.json()["message"] == "no recording with id 'nope'"
    unknown = await api.get("/recordings/done/exports/nosuchjob")
    assert unknown.status_code == 404
    assert unknown.json() == {"message": "no export 'nosuchjob' of recording 'done'",
                              "detail": "no export 'nosuchjob' of recording 'done'"}
    jobs.full = True
    full = await api.post("/recordings/done/exports", json={"fps": 3})
    assert full.status_code == 429 and full.headers["retry-after"] == "5"
    assert "exports in the cluster are queued or running" in full.json()["message"]


async def test_the_schema_documents_every_status_with_the_error_body(
        api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    create = schema["paths"]["/recordings/{recording_id}/exports"]["post"]["responses"]
    assert set(create) == {"202", "401", "404", "409", "422", "429", "503"}
    for status in ("401", "404", "409", "422", "429", "503"):
        assert create[status]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ErrorBody")
    file = schema["paths"]["/recordings/{recording_id}/exports/{job_id}/file"]["get"]
    assert set(file["responses"]["200"]["content"]) == {"video/webm", "image/png"}
