"""ExportJobs: every export job of the cluster, its state machine, and the supervision of
the task that renders it.

A job is accepted (`queued`), runs once its task got an export slot (`running`, with
progress as the task reports it) and ends `done` or `failed` with the reason in words.
The task is started by an ExportRunner (Ray tasks in pipeline/export/actor.py; a fake in
tests/unit/test_export_jobs.py): its reports arrive as an async iterator, and an
iterator that raises (the task failed, its worker died, its node was lost) fails the
job. Jobs are kept in a JobStore (the GCS's key-value store under Ray), so a restarted
jobs actor still knows every finished export; one that was unfinished then is failed,
as the task it supervised died with it.

Policy: at most `max_unfinished` jobs queued or running over the cluster and
`max_per_recording` per recording; past either a new job is refused (429), as an export
takes a CPU for a while and a burst of them would only wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from pipeline.errors import InvalidTransition, describe_error
from pipeline.export.errors import ExportNotFound, TooManyExports
from pipeline.export.models import (
    EXPORT_TRANSITIONS,
    ExportJob,
    ExportProgress,
    ExportRequest,
    ExportResult,
    ExportState,
)

_log = logging.getLogger(__name__)
KEEP_FINISHED = 1_000


class ExportRunner(Protocol):
    def run(self, job: ExportJob) -> AsyncIterator[ExportProgress | ExportResult]:
        """Renders the job somewhere: progress reports, then one result. Raises what
        failed; cancelling the iteration ends the task."""
        ...


class JobStore(Protocol):
    async def load(self) -> list[ExportJob]: ...

    async def save(self, jobs: list[ExportJob]) -> None: ...

    async def delete(self, job_ids: list[str]) -> None: ...


def transition(job: ExportJob, to: ExportState) -> None:
    if to not in EXPORT_TRANSITIONS[job.state]:
        raise InvalidTransition(f"export {job.id}", job.state.value, to.value)
    job.state = to


def task_failure(exc: BaseException) -> str:
    """Why a task failed, in words: Ray's errors by what they mean."""
    try:
        from ray import exceptions as rex
    except ImportError:  # the unit tests' fakes raise plain errors
        return describe_error(exc)
    if isinstance(exc, rex.TaskCancelledError):
        return "the export was cancelled"
    if isinstance(exc, rex.OutOfMemoryError):
        return "the export's worker ran out of memory and was stopped"
    if isinstance(exc, rex.WorkerCrashedError | rex.LocalRayletDiedError):
        return "the export's worker process died (it was killed, or its node was lost)"
    if isinstance(exc, rex.NodeDiedError):
        return "the node rendering the export was lost"
    return describe_error(exc)


class ExportJobs:
    def __init__(self, runner: ExportRunner, store: JobStore, *, max_unfinished: int = 16,
                 max_per_recording: int = 4, clock: Callable[[], float] = time.time) -> None:
        self._runner = runner
        self._store = store
        self._max_unfinished = max_unfinished
        self._max_per_recording = max_per_recording
        self._clock = clock
        self._jobs: dict[str, ExportJob] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._started: asyncio.Task[None] | None = None

    async def started(self) -> None:
        """Loads the stored jobs (once); those a predecessor left unfinished are failed."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._load())
        await asyncio.shield(self._started)

    async def _load(self) -> None:
        for job in await self._store.load():
            self._jobs[job.id] = job
            if not job.state.finished:
                self._fail(job, "the export service was restarted while this export was "
                           f"{job.state.value}; start it again")
                await self._save(job)

    async def submit(self, recording_id: str, request: ExportRequest) -> ExportJob:
        """A new job exporting the recording, queued."""
        await self.started()
        request = request.filled()
        unfinished = [j for j in self._jobs.values() if not j.state.finished]
        if len(unfinished) >= self._max_unfinished:
            raise TooManyExports(len(unfinished), self._max_unfinished, "in the cluster")
        mine = [j for j in unfinished if j.recording_id == recording_id]
        if len(mine) >= self._max_per_recording:
            raise TooManyExports(len(mine), self._max_per_recording, "of this recording")
        job = ExportJob(id=uuid.uuid4().hex[:16], recording_id=recording_id, request=request,
                        created_at=self._clock())
        self._jobs[job.id] = job
        await self._save(job)
        self._tasks[job.id] = asyncio.create_task(self._supervise(job), name=f"export-{job.id}")
        await self._trim()
        return job.model_copy()

    async def get(self, recording_id: str, job_id: str) -> ExportJob:
        await self.started()
        job = self._jobs.get(job_id)
        if job is None or job.recording_id != recording_id:
            raise ExportNotFound(recording_id, job_id)
        return job.model_copy()

    async def list(self, recording_id: str) -> list[ExportJob]:
        await self.started()
        return sorted((j.model_copy() for j in self._jobs.values()
                       if j.recording_id == recording_id), key=lambda j: j.created_at)

    async def close(self) -> None:
        """Cancels every running supervision (and with it its task)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- supervision -----------------------------------------------------------------------

    async def _supervise(self, job: ExportJob) -> None:
        try:
            async for report in self._runner.run(job.model_copy()):
                if isinstance(report, ExportProgress):
                    self._progress(job, report)
                else:
                    await self._finish(job, report)
            if not job.state.finished:
                self._fail(job, "the export's task ended without a file")
        except asyncio.CancelledError:
            if not job.state.finished:
                self._fail(job, "the export service stopped while this export ran")
                await asyncio.shield(self._save(job))
            raise
        except Exception as exc:
            reason = task_failure(exc)
            _log.warning("export %s of recording %s failed: %s", job.id, job.recording_id,
                         reason)
            if not job.state.finished:
                self._fail(job, reason)
        finally:
            self._tasks.pop(job.id, None)
        await self._save(job)

    def _progress(self, job: ExportJob, report: ExportProgress) -> None:
        if job.state is ExportState.QUEUED:
            transition(job, ExportState.RUNNING)
            job.started_at = self._clock()
        job.node_id = report.node_id
        job.frames, job.frames_total, job.captured = (report.frames, report.frames_total,
                                                      report.captured)
        job.progress = min(1.0, report.frames / report.frames_total) if report.frames_total \
            else 0.0

    async def _finish(self, job: ExportJob, result: ExportResult) -> None:
        if job.state is ExportState.QUEUED:  # a still: done before it reported progress
            transition(job, ExportState.RUNNING)
            job.started_at = self._clock()
        transition(job, ExportState.DONE)
        job.finished_at = self._clock()
        job.node_id = result.node_id
        job.frames = job.frames_total = result.frames
        job.captured = result.captured
        job.size_bytes = result.size_bytes
        job.duration_ms = result.duration_ms
        job.progress = 1.0
        job.error = None

    def _fail(self, job: ExportJob, reason: str) -> None:
        transition(job, ExportState.FAILED)
        job.error = reason
        job.finished_at = self._clock()

    async def _save(self, job: ExportJob) -> None:
        try:
            await self._store.save([job])
        except Exception as exc:
            _log.warning("export %s could not be stored: %s", job.id, describe_error(exc))

    async def _trim(self) -> None:
        """Forgets the oldest finished jobs past KEEP_FINISHED (their files stay with their
        recordings)."""
        finished = sorted((j for j in self._jobs.values() if j.state.finished),
                          key=lambda j: j.created_at)
        old = [job.id for job in finished[:max(0, len(finished) - KEEP_FINISHED)]]
        for job_id in old:
            del self._jobs[job_id]
        if old:
            try:
                await self._store.delete(old)
            except Exception as exc:
                _log.warning("old exports could not be forgotten: %s", describe_error(exc))


__all__ = ["ExportJobs", "ExportRunner", "JobStore", "task_failure", "transition"]
