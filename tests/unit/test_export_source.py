"""Where exports are written (in their recording's folder, deleted with it), and the
events they are made from (read chunk by chunk, as a viewer decodes them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.export.source import decoded_events, export_path
from pipeline.models import RecordingInfo
from pipeline.protocol import PageBatch
from pipeline.recording_store import RecordingStore
from pipeline.stream import SessionStream


def test_an_export_lives_in_its_recordings_folder_and_goes_with_it(tmp_path: Path) -> None:
    settings = Settings(recordings_url=str(tmp_path))
    path = export_path(settings, "abc123", "job1", "webm")
    assert path == tmp_path / "abc123" / "exports" / "job1.webm"
    store = RecordingStore(str(tmp_path))
    store.write_info(RecordingInfo(id="abc123", codec="deflate-raw", created_at=1.0))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"video")
    (tmp_path / "other" / "exports").mkdir(parents=True)
    store.delete("abc123")
    assert not path.parent.exists()
    assert (tmp_path / "other" / "exports").exists()  # another recording's exports stay


@pytest.mark.parametrize(("recording", "job"), [("..", "j"), ("a/b", "j"), ("a", "../x"),
                                                ("a", "")])
def test_an_id_is_never_a_path(tmp_path: Path, recording: str, job: str) -> None:
    with pytest.raises(ValueError, match="not an id"):
        export_path(Settings(recordings_url=str(tmp_path)), recording, job, "png")


async def test_the_events_are_decoded_chunk_by_chunk_across_a_restart(tmp_path: Path) -> None:
    store = RecordingStore(str(tmp_path))
    for epoch, first in ((0, 0), (1, 10)):
        stream = SessionStream("r", Settings(recordings_url=""), epoch,
                               recording=store.writer("r", "deflate-raw"))
        await stream.push([PageBatch(i % 3 == 0, 1, i, i, json.dumps([{"i": first + i}]))
                           for i in range(6)])
        stream.close()
        await stream.flush_recording(5.0)
    info = store.info("r")
    events = decoded_events(info, (store.chunk("r", i) for i in range(info.chunks)))
    assert [e["i"] for e in events] == [*range(6), *range(10, 16)]
