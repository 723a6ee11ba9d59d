from __future__ import annotations

import asyncio

from pipeline.codec import make_decoder
from pipeline.config import Settings
from pipeline.protocol import PageBatch
from pipeline.stream import SessionStream


def batch(i: int, checkout: bool = False) -> PageBatch:
    return PageBatch(checkout, 1, float(i), float(i), f'[{{"type":3,"i":{i}}}]')


async def test_numbers_compresses_and_serves_reads_in_order() -> None:
    streamer = SessionStream("s", Settings())
    assert await streamer.push([batch(1, True), batch(2)]) == 2
    assert await streamer.push([batch(3), batch(4, True), batch(5)]) == 5
    result = await streamer.read(None, 0)
    assert result.reset and [c.seq for c in result.chunks] == [4, 5]
    result = await streamer.read(0, 0)
    decoder = make_decoder(streamer.codec())
    text = b"".join(decoder.decode(c.payload, segment_start=c.segment_start)
                    for c in result.chunks)
    assert text.decode().splitlines() == [f'[{{"type":3,"i":{i}}}]' for i in range(1, 6)]
    stats = streamer.stats()
    assert (stats.batches, stats.events, stats.segments_buffered) == (5, 5, 2)
    assert stats.bytes_raw == len(text)


async def test_first_batch_always_starts_a_segment() -> None:
    streamer = SessionStream("s", Settings())
    await streamer.push([batch(1, checkout=False)])
    assert (await streamer.read(None, 0)).chunks[0].segment_start


async def test_long_poll_wakes_on_push_and_on_close() -> None:
    streamer = SessionStream("s", Settings())
    await streamer.push([batch(1, True)])
    waiting = asyncio.create_task(streamer.read(1, 10))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await streamer.push([batch(2)])
    result = await asyncio.wait_for(waiting, 1)
    assert [c.seq for c in result.chunks] == [2] and not result.ended
    waiting = asyncio.create_task(streamer.read(2, 10))
    await asyncio.sleep(0.05)
    streamer.close()
    result = await asyncio.wait_for(waiting, 1)
    assert result.ended and result.chunks == []


async def test_viewer_counts_add_up_across_readers() -> None:
    streamer = SessionStream("s", Settings())
    await streamer.read(None, 0, reader="a", viewers=3)
    streamer.report_viewers("b", 2)
    assert streamer.stats().viewers == 5
    streamer.report_viewers("a", 0)
    assert streamer.stats().viewers == 2


async def test_a_huge_batch_is_compressed_aside_while_other_streams_go_on() -> None:
    huge_stream, other = SessionStream("huge", Settings()), SessionStream("other", Settings())
    huge = PageBatch(True, 1, 1.0, 1.0, '[{"type":2,"text":"' + "x1y2z3" * 2_000_000 + '"}]')
    pushing = asyncio.create_task(huge_stream.push([batch(0, True), huge, batch(2)]))
    # The other stream is served while the huge batch is being compressed.
    while not pushing.done():
        assert await other.push([batch(1, True)]) >= 1
        await asyncio.sleep(0)
    assert await pushing == 3
    assert other.stats().batches > 1, "the other stream waited for the huge batch"
    chunks = (await huge_stream.read(0, 0)).chunks
    decoder = make_decoder(huge_stream.codec())
    lines = [decoder.decode(c.payload, segment_start=c.segment_start).decode()
             for c in chunks]
    assert lines == [batch(0).text + "\n", huge.text + "\n", batch(2).text + "\n"]
    assert [c.segment_start for c in chunks] == [True, True, False]


async def test_canvas_pictures_are_sealed_only_where_they_can_be_left_out() -> None:
    def picture(i: int, canvas: int) -> PageBatch:
        text = f'[{{"type":3,"data":{{"source":9,"id":{canvas},"i":{i}}}}}]'
        return PageBatch(False, 1, float(i), float(i), text, len(text) - 2, picture_of=canvas)

    stream = SessionStream("s", Settings(codec="deflate-raw"))
    await stream.push([picture(1, 3), batch(2), picture(3, 3), batch(4, True), picture(5, 3)])
    chunks = (await stream.read(0, 0)).chunks
    # The first batch starts the segment: no picture of it may be left out.
    assert [c.picture_of for c in chunks] == [None, None, 3, None, 3]
    # The segment decodes without its second picture: nothing after a picture refers to it.
    decoder = make_decoder("deflate-raw")
    kept = [c for c in chunks if c.seq != 3]
    text = b"".join(decoder.decode(c.payload, segment_start=c.segment_start) for c in kept)
    assert [line.decode() for line in text.splitlines()] == [
        picture(1, 3).text, batch(2).text, batch(4).text, picture(5, 3).text]

    lz4 = SessionStream("s", Settings(codec="lz4-frame"))
    await lz4.push([batch(1, True), picture(2, 3), picture(3, 3)])
    assert [c.picture_of for c in (await lz4.read(0, 0)).chunks] == [None, None, None]
