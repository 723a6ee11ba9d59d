"""The Ray side of exports: the jobs actor `exports`, the tasks it starts, and where their
jobs are kept.

`exports` is one detached, named actor on the head node (Ray restarts it,
`max_restarts=-1`): every gateway replica asks it, so a job looks the same whichever
replica answers. It starts each job as a Ray task that takes one CPU and one unit of
the custom resource `export` (RRSTREAM_EXPORT_SLOTS per node, 1 by default, offered by
`ray start` / `start_ray`): Ray spreads them over the nodes and holds them while every
slot is taken. The task streams its reports back (a Ray generator); the actor owns the
task, so a worker that dies ends the iteration with an error and fails the job.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import ray

from pipeline.config import Settings
from pipeline.errors import describe_error
from pipeline.export.jobs import ExportJobs
from pipeline.export.models import ExportJob, ExportProgress, ExportRequest, ExportResult
from pipeline.export.task import run_export
from pipeline.kv_records import KVRecords
from pipeline.logs import configure_logging

EXPORTS_NAME = "exports"
EXPORT_RESOURCE = "export"
_KEY_PREFIX = "export:"
_log = logging.getLogger(__name__)


def _export_in_worker(settings: Settings, recording_id: str, job_id: str,
                      request: ExportRequest) -> Iterator[ExportProgress | ExportResult]:
    configure_logging()
    node_id = ray.get_runtime_context().get_node_id()
    yield from run_export(settings, recording_id, job_id, request, node_id)


def export_task_options(settings: Settings) -> dict[str, Any]:
    return {"num_cpus": settings.export_cpus, "resources": {EXPORT_RESOURCE: 1},
            "max_retries": 0, "scheduling_strategy": "SPREAD"}


class RayExportRunner:
    """An ExportRunner over Ray tasks."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._task = ray.remote(_export_in_worker).options(**export_task_options(settings))

    async def run(self, job: ExportJob) -> AsyncIterator[ExportProgress | ExportResult]:
        generator = self._task.remote(self._settings, job.recording_id, job.id, job.request)
        finished = False
        try:
            async for ref in generator:
                yield await ref
            finished = True
        finally:
            if not finished:  # cancelled, or its supervisor stopped: the task stops too
                try:
                    ray.cancel(generator, force=True)
                except Exception as exc:
                    _log.warning("export %s: its task could not be cancelled: %s", job.id,
                                 describe_error(exc))


def kv_job_store(namespace: str) -> KVRecords[ExportJob]:
    """Export jobs in the GCS's key-value store, beside the session records."""
    return KVRecords(namespace, _KEY_PREFIX, ExportJob, "export job")


class ExportJobsActor:
    """ExportJobs as the Ray actor `exports`."""

    def __init__(self, settings: Settings) -> None:
        configure_logging()
        self._jobs = ExportJobs(RayExportRunner(settings), kv_job_store(settings.namespace),
                                max_unfinished=settings.export_max_unfinished,
                                max_per_recording=settings.export_max_per_recording)

    async def submit(self, recording_id: str, request: ExportRequest) -> ExportJob:
        return await self._jobs.submit(recording_id, request)

    async def get(self, recording_id: str, job_id: str) -> ExportJob:
        return await self._jobs.get(recording_id, job_id)

    async def list(self, recording_id: str) -> list[ExportJob]:
        return await self._jobs.list(recording_id)


def get_or_create_exports(settings: Settings) -> Any:
    """The jobs actor, created on first use: detached and on the head node, like the
    registry, so it outlives gateway replicas; restarted by Ray when it dies."""
    return ray.remote(ExportJobsActor).options(
        name=EXPORTS_NAME, namespace=settings.namespace, get_if_exists=True,
        lifetime="detached", num_cpus=0, max_concurrency=1_000, max_restarts=-1,
        resources={"node:__internal_head__": 0.001},
    ).remote(settings)


__all__ = ["EXPORTS_NAME", "EXPORT_RESOURCE", "ExportJobsActor", "kv_job_store",
           "RayExportRunner", "export_task_options", "get_or_create_exports"]
