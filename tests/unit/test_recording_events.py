"""GET /recordings/{id}/events' body (serve/recording_reader.py `event_array`): the
standard rrweb JSON array, read chunk by chunk in constant memory."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

from pipeline.config import Settings
from pipeline.protocol import PageBatch
from pipeline.recording_store import RecordingStore
from pipeline.stream import SessionStream
from serve.recording_reader import StoreReader, event_array

HOUR_MS = 3_600_000


def event(i: int, ts: float, kind: int = 3) -> str:
    return json.dumps({"type": kind, "data": {"source": 0, "i": i, "text": f"row {i} " * 100},
                       "timestamp": ts}, separators=(",", ":"))


async def record(store: RecordingStore, session_id: str, batches: list[PageBatch],
                 epoch: int = 0) -> None:
    stream = SessionStream(session_id, Settings(recordings_url=""), epoch,
                           recording=store.writer(session_id, "deflate-raw"))
    for at in range(0, len(batches), 500):
        await stream.push(batches[at:at + 500])
    stream.close()
    await stream.flush_recording(30.0)


async def body(store: RecordingStore, recording_id: str) -> bytes:
    reader = StoreReader(store, recording_id)
    return b"".join([piece async for piece in event_array(reader, await reader.info())])


async def test_the_events_come_back_as_one_array_across_a_restart(tmp_path: Path) -> None:
    store = RecordingStore(str(tmp_path))
    first = [PageBatch(i % 4 == 0, 2, i, i, f"[{event(2 * i, i)},{event(2 * i + 1, i)}]")
             for i in range(10)]
    await record(store, "s", first)
    # Started again after its node was lost: a new epoch, from a new checkout.
    second = [PageBatch(i == 10, 1, i, i, f"[{event(100 + i, i)}]") for i in range(10, 13)]
    await record(store, "s", second, epoch=1)
    events = json.loads(await body(store, "s"))
    assert [e["data"]["i"] for e in events] == [*range(20), 110, 111, 112]


async def test_an_empty_recording_is_an_empty_array(tmp_path: Path) -> None:
    store = RecordingStore(str(tmp_path))
    await record(store, "e", [PageBatch(True, 0, 1, 1, "[]")])
    assert json.loads(await body(store, "e")) == []


async def test_an_hour_streams_in_constant_memory(tmp_path: Path) -> None:
    """An hour of a busy page (10 batches a second, a checkout every 5 s: ~36 MB of
    events) is streamed holding a few MiB: a chunk and the next one."""
    store = RecordingStore(str(tmp_path))
    batches = [PageBatch(i % 50 == 0, 1, i * 100.0, i * 100.0, f"[{event(i, i * 100.0)}]")
               for i in range(HOUR_MS // 100)]
    await record(store, "hour", batches)
    expected = hashlib.sha256(("[" + ",".join(b.text[1:-1] for b in batches) + "]").encode())
    del batches
    info = store.info("hour")
    assert info.duration_ms >= HOUR_MS - 100 and info.chunks == 720
    reader = StoreReader(store, "hour")
    digest, size = hashlib.sha256(), 0
    tracemalloc.start()
    try:
        async for piece in event_array(reader, info):
            digest.update(piece)
            size += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size > 30_000_000
    assert digest.hexdigest() == expected.hexdigest()
    assert peak < 16 * 2**20, f"streaming an hour held {peak / 2**20:.1f} MiB at its peak"
