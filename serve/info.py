"""Builds the API's view of a session from what the registry and both actors report."""

from __future__ import annotations

from pipeline.models import DrivenBy, SessionInfo, SessionRecord, SessionStatus, StreamStats


def viewer_url(base: str, session_id: str) -> str:
    return f"{base}/?session={session_id}"


def stream_url(base: str, session_id: str) -> str:
    ws_base = "ws" + base[4:] if base.startswith("http") else base
    return f"{ws_base}/sessions/{session_id}/stream"


def session_info(record: SessionRecord, status: SessionStatus | None,
                 stats: StreamStats | None, base: str) -> SessionInfo:
    stats = stats or StreamStats()
    return SessionInfo(
        id=record.id,
        name=record.spec.name,
        state=record.state,
        start_url=(status.start_url if status else None) or
        (str(record.spec.url) if record.spec.url else None),
        url=status.url if status else None,
        created_at=record.created_at,
        started_at=status.started_at if status else None,
        ended_at=record.ended_at or (status.ended_at if status else None),
        node_id=record.node_id,
        queue_position=record.queue_position,
        restarts=record.restarts,
        events=stats.events,
        batches=stats.batches,
        bytes_raw=stats.bytes_raw,
        bytes_compressed=stats.bytes_compressed,
        viewers=stats.viewers,
        steps=status.steps if status else [],
        error=record.error or (status.error if status else None),
        navigation_error=status.navigation_error if status else None,
        recording_error=status.recording_error if status else None,
        browser_crashes=status.browser_crashes if status else 0,
        page_crashes=status.page_crashes if status else 0,
        blocked_requests=status.blocked_requests if status else 0,
        warnings=status.warnings if status else [],
        unresponsive_since=status.unresponsive_since if status else None,
        dialogs_dismissed=status.dialogs_dismissed if status else 0,
        popups_closed=status.popups_closed if status else 0,
        sampling_level=status.sampling_level if status else 0,
        stretches_dropped=status.stretches_dropped if status else 0,
        canvas_bytes=status.canvas_bytes if status else 0,
        canvas_bytes_per_s=status.canvas_bytes_per_s if status else 0.0,
        assets_captured=status.assets_captured if status else 0,
        record=record.spec.record,
        driven_by=status.driven_by if status else DrivenBy.STEPS,
        controller=status.controller if status else None,
        control=status.control if status else [],
        control_dropped=status.control_dropped if status else 0,
        viewer_url=viewer_url(base, record.id),
        stream_url=stream_url(base, record.id),
    )


__all__ = ["session_info", "stream_url", "viewer_url"]
