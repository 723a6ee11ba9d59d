from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pipeline.codec import make_decoder
from pipeline.config import Settings
from pipeline.errors import RecordingInProgress, RecordingNotFound
from pipeline.protocol import decode_frame
from pipeline.recording import RecordingStore, iter_frames
from pipeline.stream import SessionStream
from pipeline.streamer import Streamer
from tests.unit.test_stream import batch

CHECKOUTS = {1, 4, 9}


def recorded_streamer(directory: Path, session_id: str = "s1", codec: str = "deflate-raw",
                      epoch: int = 0) -> SessionStream:
    settings = Settings(codec=codec, recordings_dir=str(directory))
    store = RecordingStore.from_settings(settings)
    assert store is not None
    return SessionStream(session_id, settings, epoch, recording=store.writer(session_id, codec))


async def push_all(streamer: SessionStream, n: int = 12) -> None:
    await streamer.push([batch(i, i in CHECKOUTS) for i in range(1, 6)])
    await streamer.push([batch(i, i in CHECKOUTS) for i in range(6, n + 1)])


@pytest.mark.parametrize("codec", ["deflate-raw", "lz4-frame"])
async def test_the_file_holds_exactly_the_chunks_viewers_get(tmp_path: Path, codec: str) -> None:
    streamer = recorded_streamer(tmp_path, codec=codec)
    await push_all(streamer)
    streamer.close()
    pushed = (await streamer.read(0, 0)).chunks
    assert [c.seq for c in pushed] == list(range(1, 13))
    frames = list(iter_frames((tmp_path / "s1.frames").read_bytes()))
    read_back = []
    for frame in frames:
        header, payload = decode_frame(frame)
        assert header.session_id == "s1" and header.first_seq == header.last_seq
        assert not header.reset
        read_back.append((header.first_seq, header.segment_start, header.event_count,
                          header.first_ts, payload))
    assert read_back == [(c.seq, c.segment_start, c.event_count, c.first_ts, c.payload)
                         for c in pushed]
    assert {seq for seq, start, *_ in read_back if start} == CHECKOUTS


@pytest.mark.parametrize("codec", ["deflate-raw", "lz4-frame"])
async def test_decoding_from_the_first_checkout_gives_the_batch_texts(
        tmp_path: Path, codec: str) -> None:
    streamer = recorded_streamer(tmp_path, codec=codec)
    await push_all(streamer)
    streamer.close()
    info = RecordingStore(tmp_path).info("s1")
    decoder = make_decoder(info.codec)
    text = b""
    for frame in iter_frames(RecordingStore(tmp_path).frames("s1")):
        header, payload = decode_frame(frame)
        text += decoder.decode(payload, segment_start=header.segment_start)
    assert text.decode().splitlines() == [f'[{{"type":3,"i":{i}}}]' for i in range(1, 13)]


async def test_metadata_is_kept_at_checkouts_and_finalized_on_close(tmp_path: Path) -> None:
    streamer = recorded_streamer(tmp_path, epoch=1)
    store = RecordingStore(tmp_path)
    await streamer.push([batch(1, True), batch(2)])
    live = store.info("s1")
    assert (live.batches, live.ended_at) == (1, None)  # written at the segment start
    await streamer.push([batch(3), batch(4, True), batch(5)])
    streamer.close()
    streamer.close()  # idempotent
    info = store.info("s1")
    stats = streamer.stats()
    assert info.id == "s1" and info.codec == "deflate-raw"
    assert (info.batches, info.events) == (5, 5)
    assert info.bytes_compressed == stats.bytes_compressed
    assert (info.first_seq, info.last_seq) == ((1 << 40) + 1, (1 << 40) + 5)
    assert info.ended_at is not None and info.ended_at >= info.created_at


async def test_a_full_disk_stops_the_recording_not_the_stream(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    os.symlink("/dev/full", tmp_path / "s1.frames")  # every write fails with ENOSPC
    streamer = recorded_streamer(tmp_path)
    with caplog.at_level(logging.ERROR, logger="pipeline.recording"):
        await push_all(streamer)
        await push_all(streamer, 3)
        streamer.close()
    assert [c.seq for c in (await streamer.read(0, 0)).chunks] == list(range(1, 18))
    errors = [r for r in caplog.records if r.name == "pipeline.recording"]
    assert len(errors) == 1 and "No space left" in errors[0].getMessage()


def test_a_stream_without_batches_leaves_no_recording(tmp_path: Path) -> None:
    streamer = recorded_streamer(tmp_path)
    streamer.close()
    assert list(tmp_path.iterdir()) == []


async def test_a_restarted_session_appends_to_its_recording(tmp_path: Path) -> None:
    first = recorded_streamer(tmp_path)
    await first.push([batch(1, True), batch(2)])
    first.close()
    second = recorded_streamer(tmp_path, epoch=1)
    await second.push([batch(3, True)])
    second.close()
    info = RecordingStore(tmp_path).info("s1")
    assert (info.batches, info.first_seq, info.last_seq) == (3, 1, (1 << 40) + 1)
    seqs = [decode_frame(f)[0].first_seq
            for f in iter_frames(RecordingStore(tmp_path).frames("s1"))]
    assert seqs == [1, 2, (1 << 40) + 1]


async def test_a_stream_reopened_after_its_writer_died_mid_record_corrupts_nothing(
        tmp_path: Path) -> None:
    """A streamer killed while writing leaves half a record and metadata as of its last
    checkout; the stream reopened in the next epoch appends after the last whole record."""
    first = recorded_streamer(tmp_path)
    await push_all(first, 12)
    first._recording._file.flush()  # what had reached the disk when the process died
    frames_path = tmp_path / "s1.frames"
    whole = frames_path.stat().st_size
    with frames_path.open("ab") as cut:
        cut.write((500).to_bytes(4, "little") + b"half a frame")
    second = recorded_streamer(tmp_path, epoch=1)
    await second.push([batch(20, True), batch(21)])
    second.close()
    frames = list(iter_frames(frames_path.read_bytes()))
    seqs = [decode_frame(f)[0].first_seq for f in frames]
    assert seqs == [*range(1, 13), (1 << 40) + 1, (1 << 40) + 2]
    assert frames_path.stat().st_size > whole
    info = RecordingStore(tmp_path).info("s1")
    assert (info.batches, info.first_seq, info.last_seq) == (14, 1, (1 << 40) + 2)
    assert info.ended_at is not None


def test_a_record_cut_short_ends_the_frames() -> None:
    data = (3).to_bytes(4, "little") + b"abc" + (10).to_bytes(4, "little") + b"xy"
    assert list(iter_frames(data)) == [b"abc"]


async def test_the_store_lists_newest_first_and_deletes(tmp_path: Path) -> None:
    for session_id in ("old", "new"):
        streamer = recorded_streamer(tmp_path, session_id)
        await streamer.push([batch(1, True)])
        streamer.close()
    store = RecordingStore(tmp_path)
    assert [r.id for r in store.list()] == ["new", "old"]
    store.delete("old")
    assert [r.id for r in store.list()] == ["new"]
    for unknown in ("old", "../new", "new.json", ""):
        with pytest.raises(RecordingNotFound):
            store.info(unknown)
        with pytest.raises(RecordingNotFound):
            store.delete(unknown)


async def test_stream_host_serves_its_recordings(tmp_path: Path) -> None:
    host = Streamer(Settings(recordings_dir=str(tmp_path)))
    host.open("a")
    await host.push("a", 0, [batch(1, True), batch(2)])
    with pytest.raises(RecordingInProgress):
        host.delete_recording("a")
    host.close("a", 0)
    assert [r.id for r in await host.recordings()] == ["a"]
    assert host.recording("a").batches == 2
    assert len(list(iter_frames(await host.recording_frames("a")))) == 2
    host.delete_recording("a")
    with pytest.raises(RecordingNotFound):
        host.recording("a")


async def test_an_empty_recordings_dir_turns_recording_off(tmp_path: Path) -> None:
    host = Streamer(Settings(recordings_dir=""))
    host.open("a")
    await host.push("a", 0, [batch(1, True)])
    host.close("a", 0)
    assert await host.recordings() == []
    with pytest.raises(RecordingNotFound):
        await host.recording_frames("a")
