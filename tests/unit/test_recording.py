"""Recordings written in chunks into a local store (pipeline/recording.py,
pipeline/recording_store.py); the same over S3 is tests/integration/test_recording_s3.py."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from pipeline.codec import make_decoder
from pipeline.config import Settings
from pipeline.errors import RecordingInProgress, RecordingNotFound
from pipeline.models import RecordingInfo
from pipeline.protocol import Chunk, PageBatch, decode_frame, encode_frame
from pipeline.recording import checkout_url, iter_records
from pipeline.recording_store import RecordingStore
from pipeline.stream import SessionStream
from pipeline.streamer import Streamer
from tests.unit.test_stream import batch

CHECKOUTS = {1, 4, 9}


def store_at(directory: Path | str, chunk_bytes: int = 4 * 1024 * 1024) -> RecordingStore:
    return RecordingStore(str(directory), chunk_bytes=chunk_bytes)


def recorded_stream(store: RecordingStore, session_id: str = "s1", codec: str = "deflate-raw",
                    epoch: int = 0, name: str | None = None) -> SessionStream:
    settings = Settings(codec=codec, recordings_url="")
    return SessionStream(session_id, settings, epoch,
                         recording=store.writer(session_id, codec, name))


async def closed(stream: SessionStream) -> None:
    stream.close()
    await stream.flush_recording(5.0)


async def push_all(stream: SessionStream, n: int = 12) -> None:
    await stream.push([batch(i, i in CHECKOUTS) for i in range(1, 6)])
    await stream.push([batch(i, i in CHECKOUTS) for i in range(6, n + 1)])


def stored_frames(store: RecordingStore, recording_id: str) -> list[bytes]:
    info = store.info(recording_id)
    return [f for i in range(info.chunks) for f in iter_records(store.chunk(recording_id, i))]


def meta(i: int, href: str) -> PageBatch:
    text = (f'[{{"type":4,"data":{{"href":{json.dumps(href)},"width":800,"height":600}},'
            f'"timestamp":{i}}},{{"type":2,"data":{{}},"timestamp":{i}}}]')
    return PageBatch(True, 2, float(i), float(i), text)


@pytest.mark.parametrize("codec", ["deflate-raw", "lz4-frame"])
async def test_the_chunks_hold_exactly_the_frames_viewers_get(tmp_path: Path,
                                                              codec: str) -> None:
    store = store_at(tmp_path)
    stream = recorded_stream(store, codec=codec)
    await push_all(stream)
    await closed(stream)
    pushed = (await stream.read(0, 0)).chunks
    read_back = []
    for frame in stored_frames(store, "s1"):
        header, payload = decode_frame(frame)
        assert header.session_id == "s1" and header.first_seq == header.last_seq
        read_back.append((header.first_seq, header.segment_start, header.event_count,
                          header.first_ts, payload))
    assert read_back == [(c.seq, c.segment_start, c.event_count, c.first_ts, c.payload)
                         for c in pushed]
    # One chunk per segment: cut at each checkout.
    assert store.info("s1").chunks == len(CHECKOUTS)
    first_seqs = [decode_frame(next(iter_records(store.chunk("s1", i))))[0].first_seq
                  for i in range(3)]
    assert first_seqs == sorted(CHECKOUTS)


@pytest.mark.parametrize("codec", ["deflate-raw", "lz4-frame"])
async def test_decoding_from_the_first_checkout_gives_the_batch_texts(
        tmp_path: Path, codec: str) -> None:
    store = store_at(tmp_path)
    stream = recorded_stream(store, codec=codec)
    await push_all(stream)
    await closed(stream)
    decoder = make_decoder(store.info("s1").codec)
    text = b""
    for frame in stored_frames(store, "s1"):
        header, payload = decode_frame(frame)
        text += decoder.decode(payload, segment_start=header.segment_start)
    assert text.decode().splitlines() == [f'[{{"type":3,"i":{i}}}]' for i in range(1, 13)]


async def test_a_chunk_is_cut_at_its_byte_limit_too(tmp_path: Path) -> None:
    store = store_at(tmp_path, chunk_bytes=1024)
    stream = recorded_stream(store)
    # Random hex compresses to about half: each frame is over 1 KiB on its own.
    await stream.push([PageBatch(i == 1, 1, float(i), float(i),
                                 f'[{{"type":3,"s":"{os.urandom(1500).hex()}"}}]')
                       for i in range(1, 6)])
    await closed(stream)
    assert store.info("s1").chunks == 5
    assert len(stored_frames(store, "s1")) == 5


async def test_metadata_follows_the_chunks_and_is_final_on_close(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    stream = recorded_stream(store, epoch=1, name="checkout flow")
    await stream.push([meta(1000, "http://a.test/"), batch(1001)])
    assert stream._recording is not None and stream._recording.flush(5.0)
    first = store.info("s1")  # listed from the first batch on, before any chunk
    assert (first.chunks, first.batches, first.urls) == (0, 1, ["http://a.test/"])
    await stream.push([batch(1002), meta(2000, "http://b.test/x"), batch(2500)])
    assert stream._recording is not None and stream._recording.flush(5.0)
    live = store.info("s1")
    assert (live.chunks, live.batches, live.ended_at) == (1, 3, None)
    await stream.push([meta(3000, "http://a.test/"), batch(3001)])
    await closed(stream)
    stream.close()  # idempotent
    info = store.info("s1")
    assert info.name == "checkout flow" and info.codec == "deflate-raw"
    assert (info.batches, info.chunks) == (7, 3)
    assert info.bytes_compressed == stream.stats().bytes_compressed
    assert (info.first_seq, info.last_seq) == ((1 << 40) + 1, (1 << 40) + 7)
    assert info.urls == ["http://a.test/", "http://b.test/x"]
    assert info.page_count == 3  # a, b, then a again
    assert (info.first_ts, info.last_ts, info.duration_ms) == (1000.0, 3001.0, 2001.0)
    assert info.ended_at is not None and info.ended_at >= info.created_at
    assert not info.has_errors


async def test_errors_the_session_noted_are_counted(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    stream = recorded_stream(store)
    error = PageBatch(False, 1, 5.0, 5.0, '[{"type":5,"data":{"tag":"rrstream.error"}}]',
                      error="step 2 (click) failed: no such element")
    await stream.push([batch(1, True), error, error])
    await closed(stream)
    info = store.info("s1")
    assert (info.errors, info.has_errors) == (2, True)
    assert info.error == "step 2 (click) failed: no such element"


def test_a_checkouts_url_is_read_without_parsing_the_batch() -> None:
    assert checkout_url(meta(1, 'http://a.test/?q="x"').text) == 'http://a.test/?q="x"'
    assert checkout_url('[{"type":3,"data":{"href":"http://no/"}}]') is None
    assert checkout_url("[]") is None


async def test_a_failing_store_stops_the_recording_not_the_stream(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "s1").mkdir()
    os.symlink("/dev/full", tmp_path / "s1" / "chunks")  # not a directory: writes fail
    store = store_at(tmp_path)
    stream = recorded_stream(store)
    with caplog.at_level(logging.ERROR, logger="pipeline.recording"):
        await push_all(stream)
        await push_all(stream, 3)
        await closed(stream)
    assert [c.seq for c in (await stream.read(0, 0)).chunks] == list(range(1, 18))
    errors = [r for r in caplog.records if r.name == "pipeline.recording"]
    assert len(errors) == 1 and "recording of session s1 stopped" in errors[0].getMessage()


async def test_a_stream_without_batches_leaves_no_recording(tmp_path: Path) -> None:
    stream = recorded_stream(store_at(tmp_path))
    await closed(stream)
    assert not os.listdir(tmp_path)


async def test_a_restarted_session_goes_on_after_its_chunks(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    first = recorded_stream(store)
    await first.push([batch(1, True), batch(2)])
    await closed(first)
    second = recorded_stream(store_at(tmp_path), epoch=1)
    await second.push([batch(3, True)])
    await closed(second)
    info = store.info("s1")
    assert (info.batches, info.chunks, info.first_seq, info.last_seq) == (3, 2, 1, (1 << 40) + 1)
    assert [decode_frame(f)[0].first_seq for f in stored_frames(store, "s1")] == \
        [1, 2, (1 << 40) + 1]


async def test_a_writer_that_died_between_a_chunk_and_its_metadata_loses_nothing(
        tmp_path: Path) -> None:
    """The chunk reached the store but the metadata after it did not: the next writer
    counts that chunk again and goes on after it."""
    store = store_at(tmp_path)
    first = recorded_stream(store)
    await push_all(first, 12)
    await closed(first)
    info = store.info("s1")
    stale = info.model_copy(update={"chunks": 1, "batches": 3, "ended_at": None})
    store.write_info(stale)  # as if the process died before writing the newer one
    second = recorded_stream(store_at(tmp_path), epoch=1)
    await second.push([batch(20, True), batch(21)])
    await closed(second)
    again = store.info("s1")
    assert (again.chunks, again.batches) == (4, 14)
    assert [decode_frame(f)[0].first_seq for f in stored_frames(store, "s1")] == \
        [*range(1, 13), (1 << 40) + 1, (1 << 40) + 2]


def test_a_record_cut_short_ends_the_chunk() -> None:
    data = (3).to_bytes(4, "little") + b"abc" + (10).to_bytes(4, "little") + b"xy"
    assert list(iter_records(data)) == [b"abc"]


async def test_the_store_lists_newest_first_and_deletes_a_whole_folder(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    for session_id in ("old", "new"):
        stream = recorded_stream(store, session_id)
        await stream.push([batch(1, True)])
        await closed(stream)
    (tmp_path / "old" / "exports").mkdir()
    (tmp_path / "old" / "exports" / "job.webm").write_bytes(b"video")
    assert [r.id for r in store.list()] == ["new", "old"]
    assert store.usage()["old"] > len(b"video")
    store.delete("old")
    assert [r.id for r in store.list()] == ["new"]
    assert os.listdir(tmp_path) == ["new"]
    for unknown in ("old", "../new", "new/info.json", ""):
        with pytest.raises(RecordingNotFound):
            store.info(unknown)
        with pytest.raises(RecordingNotFound):
            store.delete(unknown)


def test_recordings_of_earlier_versions_move_into_folders(tmp_path: Path) -> None:
    """`<id>.frames` + `<id>.json` side by side, as rrstream wrote them before chunks."""
    stream_dir = tmp_path / "old-layout"
    stream_dir.mkdir()
    frames = b""
    for seq in (1, 2):
        frame = encode_frame("s9", [Chunk(seq, seq == 1, 1, 10.0 * seq, 10.0 * seq, 0.0,
                                          b"payload")])
        frames += len(frame).to_bytes(4, "little") + frame
    (stream_dir / "s9.frames").write_bytes(frames)
    (stream_dir / "s9.json").write_text(RecordingInfo(
        id="s9", codec="deflate-raw", created_at=5.0, ended_at=6.0, batches=2,
        events=2).model_dump_json())
    store = store_at(stream_dir)
    info = store.info("s9")
    assert (info.chunks, info.batches, info.first_ts, info.last_ts) == (1, 2, 10.0, 20.0)
    assert store.chunk("s9", 0) == frames
    assert sorted(p.name for p in stream_dir.iterdir()) == ["s9"]


async def test_the_streamer_serves_its_recordings_chunk_by_chunk(tmp_path: Path) -> None:
    host = Streamer(Settings(recordings_url=str(tmp_path)))
    await host.open("a", name="a session")
    await host.push("a", 0, [batch(1, True), batch(2), batch(3, True)])
    with pytest.raises(RecordingInProgress):
        await host.delete_recording("a")
    await host.close("a", 0)
    assert [(r.id, r.name) for r in await host.recordings()] == [("a", "a session")]
    info = await host.recording("a")
    assert (info.batches, info.chunks) == (3, 2)
    assert [len(list(iter_records(await host.recording_chunk("a", i)))) for i in range(2)] \
        == [2, 1]
    await host.delete_recording("a")
    with pytest.raises(RecordingNotFound):
        await host.recording("a")


async def test_an_empty_recordings_url_turns_recording_off() -> None:
    host = Streamer(Settings(recordings_url=""))
    await host.open("a")
    await host.push("a", 0, [batch(1, True)])
    await host.close("a", 0)
    assert await host.recordings() == []
    with pytest.raises(RecordingNotFound):
        await host.recording_chunk("a", 0)
