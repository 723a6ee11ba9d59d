"""The body of one export task: the recording's events, replayed frame by frame in
headless Chromium, into a WebM through ffmpeg or into one PNG.

A generator: what it yields (progress about every quarter second, then the result) is
streamed by Ray to the jobs actor that started it (pipeline/export/actor.py). Chromium
(with its Playwright driver) and ffmpeg, which do the work, run at RRSTREAM_EXPORT_NICE,
so on a node with live sessions the export gets the CPU they leave; the task's own
Python, which only passes pictures along, keeps its worker's priority, so the worker
is reused (a fresh worker per export cost 2-4 s of start-up here), and so is its
browser (pipeline/export/browser.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import orjson

from pipeline.config import Settings
from pipeline.export.browser import ExportBrowser
from pipeline.export.encoder import WebmEncoder
from pipeline.export.models import ExportProgress, ExportRequest, ExportResult
from pipeline.export.plan import FramePlan, Timeline
from pipeline.export.renderer import ReplayRenderer
from pipeline.export.source import (
    export_path,
    recording_assets,
    recording_events,
    stored_export,
)

_REPORT_EVERY_S = 0.25


def run_export(settings: Settings, recording_id: str, job_id: str, request: ExportRequest,
               node_id: str = "") -> Iterator[ExportProgress | ExportResult]:
    """Renders one export; `node_id` names the node it runs on in its reports."""
    request = request.filled()
    events = recording_events(settings, recording_id)
    plan = FramePlan(Timeline.of(events), request)
    path = export_path(settings, recording_id, job_id, request.extension)
    yield ExportProgress(node_id, 0, plan.count, 0)  # running: the job shows it at once
    loop, browser = _worker_browser(settings)
    renderer = ReplayRenderer(loop.run_until_complete(browser.get()), settings,
                              orjson.dumps(events), request.width, request.height,
                              recording_assets(settings, recording_id))
    del events
    try:
        loop.run_until_complete(renderer.start())
        if plan.still:
            picture = loop.run_until_complete(renderer.frame(plan.offset(0), "png"))
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            try:
                partial.write_bytes(picture)
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
            yield ExportResult(node_id, stored_export(settings, recording_id, path),
                               len(picture), 1, 1, 0)
            return
        captured = 0
        picture = b""
        reported = time.monotonic()
        with WebmEncoder(path, plan.fps, nice=settings.export_nice) as encoder:
            for frame in plan:
                if frame.capture or not picture:
                    picture = loop.run_until_complete(renderer.frame(frame.offset_ms, "jpeg"))
                    captured += 1
                encoder.write(picture)
                if time.monotonic() - reported >= _REPORT_EVERY_S:
                    reported = time.monotonic()
                    yield ExportProgress(node_id, frame.index + 1, plan.count, captured)
        size = path.stat().st_size
        yield ExportResult(node_id, stored_export(settings, recording_id, path), size,
                           plan.count, captured, plan.duration_ms)
    finally:
        try:
            loop.run_until_complete(renderer.close())
        finally:
            if not settings.export_keep_browser:
                loop.run_until_complete(browser.close())


# This worker's event loop and browser, kept for its next export: Playwright's objects
# belong to the loop they were made on.
_WORKER: tuple[asyncio.AbstractEventLoop, ExportBrowser] | None = None


def _worker_browser(settings: Settings) -> tuple[asyncio.AbstractEventLoop, ExportBrowser]:
    global _WORKER
    if _WORKER is None:
        _WORKER = (asyncio.new_event_loop(), ExportBrowser(settings))
    return _WORKER


__all__ = ["run_export"]
