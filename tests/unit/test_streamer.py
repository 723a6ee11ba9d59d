from __future__ import annotations

import asyncio

import pytest

from pipeline.config import Settings
from pipeline.errors import StreamUnavailable
from pipeline.protocol import decode_frame
from pipeline.recording import iter_records
from pipeline.streamer import Streamer
from tests.unit.test_stream import batch


async def test_each_session_has_its_own_numbering_and_buffer() -> None:
    host = Streamer(Settings(recordings_url=""))
    await host.open("a")
    await host.open("b", epoch=1)  # a session restarted on this node
    assert await host.push("a", 0, [batch(1, True), batch(2)]) == 2
    assert await host.push("b", 1, [batch(7, True)]) == (1 << 40) + 1
    assert [c.seq for c in (await host.read("a", None, 0)).chunks] == [1, 2]
    assert [c.first_ts for c in (await host.read("b", None, 0)).chunks] == [7.0]
    assert (host.stats("a").events, host.stats("b").events) == (2, 1)
    assert host.codec("a") == Settings().codec


async def test_closing_one_stream_ends_only_its_readers() -> None:
    host = Streamer(Settings(recordings_url=""))
    await host.open("a")
    await host.open("b")
    await host.push("a", 0, [batch(1, True)])
    await host.push("b", 0, [batch(1, True)])
    waiting_a = asyncio.create_task(host.read("a", 1, 10))
    waiting_b = asyncio.create_task(host.read("b", 1, 0.2))
    await asyncio.sleep(0)
    await host.close("a", 0)
    assert (await waiting_a).ended
    assert not (await waiting_b).ended


async def test_a_dropped_stream_is_unavailable_and_its_waiting_reader_ends() -> None:
    host = Streamer(Settings(recordings_url=""))
    await host.open("a")
    await host.push("a", 0, [batch(1, True)])
    waiting = asyncio.create_task(host.read("a", 1, 10))
    await asyncio.sleep(0)
    host.drop("a")
    host.drop("a")  # idempotent
    assert (await waiting).ended
    assert host.streams() == {}
    with pytest.raises(StreamUnavailable):
        await host.read("a", None, 0)


async def test_a_reopened_stream_appends_its_recording_after_the_earlier_one(tmp_path) -> None:
    host = Streamer(Settings(recordings_url=str(tmp_path)))
    await host.open("a")
    await host.push("a", 0, [batch(1, True), batch(2)])
    # A viewer's long-poll still holds the earlier stream when the session restarts.
    waiting = asyncio.create_task(host.read("a", 2, 5.0))
    await asyncio.sleep(0)
    await host.open("a", epoch=1)  # restarted on this node
    await host.push("a", 1, [batch(3, True)])
    await host.close("a", 1)
    waiting.cancel()
    info = await host.recording("a")
    frames = [f for i in range(info.chunks)
              for f in iter_records(await host.recording_chunk("a", i))]
    assert [decode_frame(f)[0].first_seq for f in frames] == [1, 2, (1 << 40) + 1]


async def test_a_push_or_close_from_another_epoch_is_refused() -> None:
    """A session actor that outlived its replacement must not write into its stream."""
    host = Streamer(Settings(recordings_url=""))
    await host.open("a", epoch=2)
    with pytest.raises(StreamUnavailable):
        await host.push("a", 1, [batch(1, True)])
    with pytest.raises(StreamUnavailable):
        await host.close("a", 1)
    assert await host.push("a", 2, [batch(1, True)]) == (2 << 40) + 1
    assert (await host.read("a", None, 0)).epoch == 2


def test_a_restarted_streamer_has_a_new_instance() -> None:
    assert Streamer(Settings(recordings_url="")).instance() != \
        Streamer(Settings(recordings_url="")).instance()


async def test_a_session_that_is_not_recorded_streams_and_stores_nothing(tmp_path) -> None:
    host = Streamer(Settings(recordings_url=str(tmp_path)))
    await host.open("secret", record=False)
    await host.open("kept")
    await host.push("secret", 0, [batch(1, True), batch(2)])
    await host.push("kept", 0, [batch(1, True)])
    assert [c.seq for c in (await host.read("secret", None, 0)).chunks] == [1, 2]
    await host.close("secret", 0)
    await host.close("kept", 0)
    assert [r.id for r in await host.recordings()] == ["kept"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
