"""A viewer that falls behind on a canvas page gets each canvas's newest picture, not every
one in between, and every other batch (docs/protocol.md, "Skipped pictures").

The page (tests/fixtures/pixel_site/canvas-race.html) redraws four canvases of noise ten
times a second, so each picture is tens of kB, and changes its DOM every 100 ms. One
viewer stops reading (and so acknowledging) for two seconds at a time: the stack's
256 KiB window fills and the pictures wait in its queue on the gateway, where a newer
picture of a canvas supersedes the one before. A viewer that did not ask for skips reads
throughout and gets every picture. The recording is the reference for both.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from serve.client import Frame, StreamClosed, Viewer, stored_frames


def picture_of(line: bytes) -> int | None:
    """The canvas a batch pictures, when that is all it is."""
    events = orjson.loads(line)
    if len(events) != 1 or events[0].get("type") != 3:
        return None
    data = events[0].get("data", {})
    return data.get("id") if data.get("source") == 9 else None


def batches(frames: list[Frame]) -> dict[int, bytes]:
    return {seq: line for f in frames for seq, line in f.batches}


def newest_pictures(lines: dict[int, bytes]) -> dict[int, bytes]:
    newest: dict[int, bytes] = {}
    for seq in sorted(lines):
        canvas = picture_of(lines[seq])
        if canvas is not None:
            newest[canvas] = lines[seq]
    return newest


async def read_for(conn, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            await conn.receive(left)
        except TimeoutError:
            return


async def test_a_viewer_that_falls_behind_gets_the_newest_picture_of_each_canvas(
        client, stack, pixel_site) -> None:
    sid = (await client.create_session(f"{pixel_site.url}/canvas-race.html?ms=9000"))["id"]
    everything = client.viewer(sid, on_gap="raise", skips=False)
    # Acks every 0.1 s while it reads: at the default 0.5 s a 256 KiB window carries about
    # what the page makes, and the queue would never drain between the pauses.
    slow: Viewer = client.viewer(sid, on_gap="raise", max_queue=1, ack_every_s=0.1)
    everything.start()
    try:
        await everything.wait_for(lambda f: any(picture_of(line) is not None
                                                for _, line in f.batches), 60)
        conn = await slow.connect()
        for _ in range(3):
            await read_for(conn, 1.0)
            await asyncio.sleep(2.0)  # reads nothing, acknowledges nothing
        await everything.wait_for(lambda f: b"stopped" in (f.text or b""), 60)
        await asyncio.sleep(2.0)  # each canvas's final picture is taken within 0.5 s
    finally:
        await client.stop_session(sid)
    async with asyncio.timeout(60):
        try:
            while True:
                await conn.receive(30)
        except StreamClosed as closed:
            assert closed.code == 1000
        await everything.stop()
    deadline = time.monotonic() + 30
    while (await client.recording(sid)).get("ended_at") is None:
        assert time.monotonic() < deadline, "the recording never finished"
        await asyncio.sleep(0.25)
    recorded = batches(list(stored_frames(await client.recording_frames(sid),
                                          stack.settings.codec)))

    assert [r.reason for r in slow.resets] == ["join"], "the slow viewer was moved on"
    skipped = [seq for f in slow.frames if f.skipped
               for seq in range(f.header.first_seq, f.header.last_seq + 1)]
    assert skipped, "the slow viewer got every picture: it never fell behind"
    assert slow.stats.skipped_frames > 0 and everything.stats.skipped_frames == 0
    # Nothing but superseded pictures was left out, and every other batch came, unchanged.
    first = slow.frames[0].header.first_seq
    got = batches(slow.frames)
    assert all(picture_of(recorded[seq]) is not None for seq in skipped)
    assert sorted([*got, *skipped]) == [seq for seq in sorted(recorded) if seq >= first]
    assert all(got[seq] == recorded[seq] for seq in got)
    # The picture each canvas ends on is the newest one recorded, for both viewers.
    final = newest_pictures(recorded)
    assert len(final) == 4
    assert newest_pictures(got) == final
    assert newest_pictures(batches(everything.frames)) == final
    assert len(everything.frames) and all(not f.skipped for f in everything.frames)
    pictures = sum(picture_of(recorded[seq]) is not None for seq in recorded if seq >= first)
    print(f"the slow viewer was sent {len(skipped)} of {pictures} pictures as skipped")
