"""Exports: a recording replayed in headless Chromium into a WebM video or a PNG still.

models (the request, a job's states), plan (which frames, which need a screenshot),
source (where the events come from, where the file goes), renderer (Chromium and the
export page), encoder (ffmpeg), task (one export, as a Ray task), jobs (every job, its
state machine and supervision), actor (the Ray side: the `exports` actor, its tasks and
store), files (an export's file from whichever node rendered it).
"""

from __future__ import annotations

from pipeline.export.errors import (
    ExportError,
    ExportFailed,
    ExportFileGone,
    ExportNotFound,
    ExportNotReady,
    ExportsUnavailable,
    TooManyExports,
)
from pipeline.export.jobs import ExportJobs, ExportRunner, JobStore
from pipeline.export.models import ExportJob, ExportRequest, ExportState
from pipeline.export.source import export_path, recording_events

__all__ = [
    "ExportError",
    "ExportFailed",
    "ExportFileGone",
    "ExportJob",
    "ExportJobs",
    "ExportNotFound",
    "ExportNotReady",
    "ExportRequest",
    "ExportRunner",
    "ExportState",
    "ExportsUnavailable",
    "JobStore",
    "TooManyExports",
    "export_path",
    "recording_events",
]
