"""Retention (pipeline/retention.py): age and size limits delete the right recordings,
oldest first, with everything stored beside them, and nothing else."""

from __future__ import annotations

from pathlib import Path

from pipeline.models import RecordingInfo
from pipeline.recording_store import RecordingStore
from pipeline.retention import ABANDONED_S, Retention, Stored, expired, stored

NOW = 1_000_000.0


def test_age_deletes_finished_recordings_older_than_the_limit() -> None:
    found = [Stored("a", NOW - 500, True, 10), Stored("b", NOW - 50, True, 10),
             Stored("c", NOW - 900, False, 10)]  # still being written: kept
    assert expired(found, NOW, max_age_s=100, max_bytes=0) == ["a"]


def test_size_deletes_the_oldest_until_the_store_fits() -> None:
    found = [Stored("new", NOW - 1, True, 40), Stored("old", NOW - 3, True, 40),
             Stored("mid", NOW - 2, True, 40), Stored("live", NOW - 9, False, 40)]
    # 160 stored, 100 allowed: the live one counts but stays; old, then mid go.
    assert expired(found, NOW, max_age_s=0, max_bytes=100) == ["old", "mid"]
    assert expired(found, NOW, max_age_s=0, max_bytes=200) == []


def test_no_limits_delete_nothing() -> None:
    assert expired([Stored("a", 0.0, True, 10**12)], NOW, 0, 0) == []


def test_a_recording_whose_writer_vanished_counts_as_finished_after_an_hour() -> None:
    base = {"codec": "deflate-raw", "created_at": NOW - 7200}
    infos = [RecordingInfo(id="ended", ended_at=NOW - 7000, **base),
             RecordingInfo(id="abandoned", last_ts=(NOW - ABANDONED_S - 1) * 1000, **base),
             RecordingInfo(id="quiet", last_ts=(NOW - 60) * 1000, **base),
             RecordingInfo(id="running", **base)]
    found = {s.id: s.finished for s in stored(infos, {"ended": 5}, {"running"}, NOW)}
    assert found == {"ended": True, "abandoned": True, "quiet": False, "running": False}


def _recording(store: RecordingStore, recording_id: str, created_at: float, size: int) -> None:
    store.write_info(RecordingInfo(id=recording_id, codec="deflate-raw", created_at=created_at,
                                   ended_at=created_at + 1, chunks=1))
    store.write_chunk(recording_id, 0, b"x" * size)


def test_a_round_deletes_recordings_with_their_exports_and_keeps_the_rest(
        tmp_path: Path) -> None:
    store = RecordingStore(str(tmp_path))
    _recording(store, "oldest", NOW - 300, 1_000)
    _recording(store, "older", NOW - 200, 1_000)
    _recording(store, "newest", NOW - 10, 1_000)
    exports = tmp_path / "older" / "exports"
    exports.mkdir()
    (exports / "job.webm").write_bytes(b"v" * 1_000)
    retention = Retention(store, set, max_age_s=250, max_bytes=2_500, every_s=60,
                          clock=lambda: NOW)
    # oldest: too old; older (with its export, 2 kB): over the size once oldest is gone.
    assert retention.run_once() == ["oldest", "older"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["newest"]
    assert [r.id for r in store.list()] == ["newest"]
    assert retention.run_once() == []
