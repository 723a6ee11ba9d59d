"""Where an export's input comes from, and where its output goes.

The events are read a chunk at a time from the recording store (pipeline/recording_store.py):
a shared store (S3) directly, a node's local store through that node's streamer, one
chunk per call, and decoded as a viewer would (a gap where the session began again goes
on from its next segment start). The file goes into the recording's folder, `exports/`:
in the local store of the node that renders it (so deleting the recording, which deletes
its folder on every node, deletes it too); with a shared store, it is made in a local
folder of the same shape under the system's temporary directory and then uploaded into
the recording's folder in the store (`stored_export`), so it outlives the node and is
deleted with the recording. The page assets the recording names (`/assets/<sha256>`)
are read the same way, one per call (`recording_assets`). The rest of the export calls
only `recording_events`, `recording_assets`, `export_path` and `stored_export`.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import orjson
import ray
from ray.exceptions import RayTaskError

from pipeline.actors import REGISTRY_NAME
from pipeline.asset_cache import Asset
from pipeline.codec import make_decoder
from pipeline.config import Settings
from pipeline.errors import unwrap
from pipeline.models import RecordingInfo
from pipeline.protocol import decode_frame
from pipeline.recording import iter_records
from pipeline.recording_store import RecordingStore

_CALL_TIMEOUT_S = 60.0
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def recording_events(settings: Settings, recording_id: str) -> list[dict[str, Any]]:
    """Every rrweb event of the recording, in stored order. Raises RecordingNotFound."""
    info, chunk = _reader(settings, recording_id)
    return list(decoded_events(info, (chunk(i) for i in range(info.chunks))))


def decoded_events(info: RecordingInfo, chunks: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    decoder = make_decoder(info.codec)
    last_seq: int | None = None
    for data in chunks:
        for record in iter_records(data):
            header, payload = decode_frame(record)
            if last_seq is None or header.first_seq != last_seq + 1:
                if not header.segment_start:
                    continue  # nothing decodes before the next segment start
                decoder = make_decoder(info.codec)
            last_seq = header.last_seq
            text = decoder.decode(payload, segment_start=header.segment_start)
            for line in text.split(b"\n"):
                if line:
                    yield from orjson.loads(line)


def recording_assets(settings: Settings, recording_id: str) -> Callable[[str], Asset | None]:
    """How to read a page asset the recording names: from a shared store directly, else
    through the streamer that stores the recording (its copies, or its node's cache).
    The callable blocks; RecordingNotFound if the recording is gone."""
    shared = RecordingStore.shared_from_settings(settings)
    if shared is not None:
        return shared.find_asset
    registry = ray.get_actor(REGISTRY_NAME, namespace=settings.namespace)
    try:
        streamer = ray.get(registry.recording_streamer.remote(recording_id),
                           timeout=_CALL_TIMEOUT_S)
    except RayTaskError as exc:  # RecordingNotFound, as the registry said
        raise unwrap(exc) from None

    def asset(asset_id: str) -> Asset | None:
        found: Asset | None = ray.get(streamer.asset.remote(asset_id),
                                      timeout=_CALL_TIMEOUT_S)
        return found

    return asset


def _reader(settings: Settings,
            recording_id: str) -> tuple[RecordingInfo, Callable[[int], bytes]]:
    shared = RecordingStore.shared_from_settings(settings)
    if shared is not None:
        return shared.info(recording_id), lambda i: shared.chunk(recording_id, i)
    registry = ray.get_actor(REGISTRY_NAME, namespace=settings.namespace)
    try:
        streamer = ray.get(registry.recording_streamer.remote(recording_id),
                           timeout=_CALL_TIMEOUT_S)
        info = ray.get(streamer.recording.remote(recording_id), timeout=_CALL_TIMEOUT_S)
    except RayTaskError as exc:  # RecordingNotFound, as the registry said
        raise unwrap(exc) from None

    def chunk(index: int) -> bytes:
        data: bytes = ray.get(streamer.recording_chunk.remote(recording_id, index),
                              timeout=_CALL_TIMEOUT_S)
        return data

    return info, chunk


def export_path(settings: Settings, recording_id: str, job_id: str, extension: str) -> Path:
    """Where an export's file goes: `<id>/exports/<job>.<ext>` in this node's local store."""
    if not (_JOB_ID.fullmatch(recording_id) and _JOB_ID.fullmatch(job_id)):
        raise ValueError(f"not an id: {recording_id!r} / {job_id!r}")
    url = settings.recordings_url
    if url and fsspec.utils.get_protocol(url) in ("file", "local"):
        root = Path(url.removeprefix("file://")).expanduser()
    else:
        root = Path(tempfile.gettempdir()) / "rrstream-exports"
    return root / recording_id / "exports" / f"{job_id}.{extension}"


def stored_export(settings: Settings, recording_id: str, path: Path) -> str:
    """Where a finished export's file is kept: with a shared store, uploaded into the
    recording's `exports/` there and its local copy removed; else where it was made."""
    store = RecordingStore.shared_from_settings(settings)
    if store is None:
        return str(path)
    try:
        return store.put_export(recording_id, path.name, str(path))
    finally:
        path.unlink(missing_ok=True)


__all__ = ["decoded_events", "export_path", "recording_assets", "recording_events",
           "stored_export"]
