"""ExportJobs without Ray: the job state machine, its supervision of a (fake) task, the
queue's limits and what a restart leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pipeline.errors import InvalidTransition
from pipeline.export.errors import ExportNotFound, TooManyExports
from pipeline.export.jobs import ExportJobs, transition
from pipeline.export.models import (
    ExportJob,
    ExportProgress,
    ExportRequest,
    ExportResult,
    ExportState,
)

pytestmark = pytest.mark.timeout(30)


class FakeTask:
    """One job's task: the test hands it reports, or an error, one at a time."""

    def __init__(self, job: ExportJob) -> None:
        self.job = job
        self.reports: asyncio.Queue[ExportProgress | ExportResult | BaseException | None] = (
            asyncio.Queue())
        self.cancelled = False


class FakeRunner:
    def __init__(self) -> None:
        self.tasks: dict[str, FakeTask] = {}

    async def run(self, job: ExportJob) -> AsyncIterator[ExportProgress | ExportResult]:
        task = self.tasks[job.id] = FakeTask(job)
        try:
            while (report := await task.reports.get()) is not None:
                if isinstance(report, BaseException):
                    raise report
                yield report
        except asyncio.CancelledError:
            task.cancelled = True
            raise


class MemoryStore:
    def __init__(self, jobs: list[ExportJob] | None = None) -> None:
        self.jobs = {job.id: job.model_copy() for job in jobs or []}

    async def load(self) -> list[ExportJob]:
        return [job.model_copy() for job in self.jobs.values()]

    async def save(self, jobs: list[ExportJob]) -> None:
        for job in jobs:
            self.jobs[job.id] = job.model_copy()

    async def delete(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self.jobs.pop(job_id, None)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
async def jobs() -> AsyncIterator[tuple[ExportJobs, FakeRunner, MemoryStore]]:
    runner, store = FakeRunner(), MemoryStore()
    core = ExportJobs(runner, store, max_unfinished=3, max_per_recording=2,
                      clock=iter(range(1_000, 10_000)).__next__)
    try:
        yield core, runner, store
    finally:
        await core.close()


def test_the_state_machine_refuses_what_it_does_not_allow() -> None:
    job = ExportJob(id="j", recording_id="r", request=ExportRequest(), created_at=0)
    transition(job, ExportState.RUNNING)
    with pytest.raises(InvalidTransition, match="cannot go from 'running' to 'queued'"):
        transition(job, ExportState.QUEUED)
    transition(job, ExportState.DONE)
    for to in ExportState:
        with pytest.raises(InvalidTransition):
            transition(job, to)


async def test_a_job_runs_reports_progress_and_ends_done(jobs) -> None:
    core, runner, store = jobs
    job = await core.submit("rec", ExportRequest(fps=5))
    assert job.state is ExportState.QUEUED and job.progress == 0
    assert job.request == ExportRequest(fps=5, start_ms=0)  # defaults written out
    await settle()
    task = runner.tasks[job.id]
    assert (await core.get("rec", job.id)).state is ExportState.QUEUED  # no slot yet

    await task.reports.put(ExportProgress("node-a", 30, 120, 12))
    await settle()
    running = await core.get("rec", job.id)
    assert (running.state, running.progress, running.frames, running.frames_total,
            running.captured, running.node_id) == (ExportState.RUNNING, 0.25, 30, 120, 12,
                                                   "node-a")
    assert running.started_at is not None

    await task.reports.put(ExportResult("node-a", "/x/j.webm", 4_321, 120, 40, 24_000))
    await task.reports.put(None)
    await settle()
    done = await core.get("rec", job.id)
    assert (done.state, done.progress, done.frames, done.size_bytes, done.duration_ms,
            done.error) == (ExportState.DONE, 1.0, 120, 4_321, 24_000, None)
    assert store.jobs[job.id].state is ExportState.DONE  # kept for a restarted actor


async def test_a_task_that_fails_fails_its_job_with_the_reason_in_words(jobs) -> None:
    core, runner, _ = jobs
    job = await core.submit("rec", ExportRequest())
    await settle()
    await runner.tasks[job.id].reports.put(ExportProgress("n", 1, 10, 1))
    await runner.tasks[job.id].reports.put(OSError("No space left on device"))
    await settle()
    failed = await core.get("rec", job.id)
    assert failed.state is ExportState.FAILED
    assert failed.error == "connection or I/O error: No space left on device"
    assert failed.finished_at is not None


async def test_a_task_that_ends_without_a_file_fails_its_job(jobs) -> None:
    core, runner, _ = jobs
    job = await core.submit("rec", ExportRequest())
    await settle()
    await runner.tasks[job.id].reports.put(None)
    await settle()
    assert (await core.get("rec", job.id)).error == "the export's task ended without a file"


async def test_every_export_asked_for_is_a_job_of_its_own(jobs) -> None:
    core, runner, _ = jobs
    first = await core.submit("rec", ExportRequest(format="png"))
    again = await core.submit("rec", ExportRequest(format="png", at_ms=0))
    assert again.id != first.id and again.request == first.request
    await settle()
    assert set(runner.tasks) == {first.id, again.id}


async def test_the_queue_is_bounded_per_recording_and_over_the_cluster(jobs) -> None:
    core, runner, _ = jobs
    a = await core.submit("one", ExportRequest(fps=1))
    await core.submit("one", ExportRequest(fps=2))
    with pytest.raises(TooManyExports, match="2 exports of this recording are queued or "
                       "running \\(at most 2\\)"):
        await core.submit("one", ExportRequest(fps=3))
    await core.submit("two", ExportRequest(fps=1))
    with pytest.raises(TooManyExports, match="3 exports in the cluster"):
        await core.submit("three", ExportRequest())
    await settle()
    await runner.tasks[a.id].reports.put(ExportResult("n", "/p", 1, 1, 1, 100))
    await runner.tasks[a.id].reports.put(None)
    await settle()
    job = await core.submit("three", ExportRequest())  # a place in the queue freed
    assert job.state is ExportState.QUEUED


async def test_jobs_are_found_only_under_their_recording(jobs) -> None:
    core, _, _ = jobs
    job = await core.submit("rec", ExportRequest())
    with pytest.raises(ExportNotFound, match=f"no export '{job.id}' of recording 'other'"):
        await core.get("other", job.id)
    with pytest.raises(ExportNotFound):
        await core.get("rec", "nope")
    assert [j.id for j in await core.list("rec")] == [job.id]
    assert await core.list("other") == []


async def test_a_restarted_actor_keeps_finished_jobs_and_fails_the_unfinished() -> None:
    done = ExportJob(id="d", recording_id="r", request=ExportRequest(), created_at=1,
                     state=ExportState.DONE, progress=1.0, size_bytes=10)
    running = ExportJob(id="u", recording_id="r", request=ExportRequest(fps=3), created_at=2,
                        state=ExportState.RUNNING, progress=0.5)
    store = MemoryStore([done, running])
    core = ExportJobs(FakeRunner(), store)
    try:
        assert (await core.get("r", "d")).state is ExportState.DONE
        lost = await core.get("r", "u")
        assert lost.state is ExportState.FAILED
        assert lost.error == ("the export service was restarted while this export was "
                              "running; start it again")
        assert store.jobs["u"].state is ExportState.FAILED
    finally:
        await core.close()


async def test_closing_cancels_running_tasks_and_fails_their_jobs(jobs) -> None:
    core, runner, store = jobs
    job = await core.submit("rec", ExportRequest())
    await settle()
    await core.close()
    assert runner.tasks[job.id].cancelled
    assert store.jobs[job.id].state is ExportState.FAILED
    assert store.jobs[job.id].error == "the export service stopped while this export ran"
