from __future__ import annotations

import asyncio

from pipeline.protocol import Chunk
from serve.viewers import Viewer


def chunks(first: int, last: int, starts: set[int]) -> list[Chunk]:
    return [Chunk(s, s in starts, 1, 0.0, 0.0, 0.0, b"p") for s in range(first, last + 1)]


async def test_delivery_groups_chunks_into_one_frame_per_segment() -> None:
    viewer = Viewer(max_frames=100)
    viewer.prime(chunks(1, 6, {1, 4}), "join")
    delivery = await viewer.next(0.1)
    assert delivery.reset == "join"
    assert [[c.seq for c in f] for f in delivery.frames] == [[1, 2, 3], [4, 5, 6]]
    assert (await viewer.next(0.01)).frames == []


async def test_duplicates_from_a_catchup_are_skipped() -> None:
    viewer = Viewer(max_frames=100)
    viewer.prime(chunks(5, 8, {5}), None)
    viewer.offer(chunks(7, 10, {5}))
    delivery = await viewer.next(0.1)
    assert [c.seq for f in delivery.frames for c in f] == [5, 6, 7, 8, 9, 10]


async def test_a_slow_viewer_skips_to_the_newest_checkout() -> None:
    viewer = Viewer(max_frames=10)
    for seq in range(1, 40):
        viewer.offer(chunks(seq, seq, {1, 12, 25, 33}))
    delivery = await viewer.next(0.1)
    assert delivery.reset == "slow_viewer"
    assert delivery.frames[0][0].seq == 33 and delivery.frames[-1][-1].seq == 39
    assert viewer.skips >= 1


async def test_a_resumed_viewers_catchup_does_not_make_it_slow() -> None:
    # Back after its replica was replaced, a viewer asks for what it missed: three
    # segments, more than its bound. It gets all of it, then the live stream.
    viewer = Viewer(max_frames=10)
    viewer.prime(chunks(101, 140, {110, 120, 130}), None)
    viewer.offer(chunks(141, 145, set()))
    delivery = await viewer.next(0.1)
    assert delivery.reset is None
    assert [c.seq for f in delivery.frames for c in f] == list(range(101, 146))
    assert viewer.skips == 0


async def test_beyond_its_catchup_a_resumed_viewer_can_still_fall_behind() -> None:
    viewer = Viewer(max_frames=10)
    viewer.prime(chunks(101, 130, {110, 120}), None)
    for seq in range(131, 150):  # never taken: more than the bound beyond the catch-up
        viewer.offer(chunks(seq, seq, {135, 145}))
    delivery = await viewer.next(0.1)
    assert delivery.reset == "slow_viewer" and delivery.frames[0][0].seq == 145
    viewer.offer(chunks(150, 165, {160}))  # the catch-up was sent: the plain bound again
    assert viewer.depth == 6


async def test_without_a_newer_checkout_nothing_is_dropped() -> None:
    viewer = Viewer(max_frames=5)
    viewer.offer(chunks(1, 30, {1}))
    delivery = await viewer.next(0.1)
    assert delivery.reset is None and len(delivery.frames[0]) == 30


def sized(first: int, last: int, starts: set[int], size: int) -> list[Chunk]:
    return [Chunk(s, s in starts, 1, 0.0, 0.0, 0.0, b"p" * size) for s in range(first, last + 1)]


async def test_a_viewer_with_acks_gets_at_most_a_window_in_flight() -> None:
    viewer = Viewer(max_frames=1000)
    viewer.use_acks(window_bytes=1000)
    viewer.offer(sized(1, 10, {1}, 300))
    first = await viewer.next(0.01)
    sent = [c.seq for f in first.frames for c in f]
    assert sent == [1, 2, 3, 4]  # 1200 bytes: the chunk that crosses the window still goes
    viewer.sent(4, 1200)
    assert not viewer.window_open
    assert (await viewer.next(0.01)).frames == []
    viewer.ack(4)
    assert [c.seq for f in (await viewer.next(0.01)).frames for c in f] == [5, 6, 7, 8]


async def test_a_stalled_viewer_with_acks_skips_ahead_instead_of_buffering() -> None:
    viewer = Viewer(max_frames=20)
    viewer.use_acks(window_bytes=500)
    viewer.offer(sized(1, 5, {1}, 200))
    delivery = await viewer.next(0.01)
    assert [c.seq for f in delivery.frames for c in f] == [1, 2, 3]
    viewer.sent(3, 600)
    for seq in range(6, 60):  # never acknowledged
        viewer.offer(sized(seq, seq, {1, 30, 50}, 200))
    assert viewer.depth <= 20 + 10
    viewer.ack(3)
    delivery = await viewer.next(0.01)
    assert delivery.reset == "slow_viewer" and delivery.frames[0][0].seq == 50


async def test_a_minimum_interval_joins_what_arrives_meanwhile_into_one_frame() -> None:
    viewer = Viewer(max_frames=100)
    viewer.offer(chunks(1, 1, {1}))
    first = await viewer.next(0.1, min_interval_s=0.05)
    assert [c.seq for f in first.frames for c in f] == [1]

    async def trickle() -> None:
        for seq in range(2, 6):
            viewer.offer(chunks(seq, seq, {1}))
            await asyncio.sleep(0.005)

    feeding = asyncio.create_task(trickle())
    second = await viewer.next(0.5, min_interval_s=0.05)
    await feeding
    assert [[c.seq for c in f] for f in second.frames] == [[2, 3, 4, 5]]


async def test_a_viewer_joining_an_empty_stream_gets_its_reset_with_the_first_frame() -> None:
    viewer = Viewer(max_frames=100)
    viewer.prime([], "join")  # the session has recorded nothing yet
    assert (await viewer.next(0.01)).reset is None  # nothing to send, nothing said
    viewer.offer(chunks(1, 2, {1}))
    delivery = await viewer.next(0.1)
    assert delivery.reset == "join"
    assert [[c.seq for c in f] for f in delivery.frames] == [[1, 2]]
    viewer.offer(chunks(3, 3, set()))
    assert (await viewer.next(0.1)).reset is None


def picture(seq: int, canvas: int) -> Chunk:
    return Chunk(seq, False, 1, 0.0, 0.0, 0.0, b"webp", picture_of=canvas)


def runs(delivery: object) -> list[tuple[list[int], bool]]:
    """Each frame's sequence numbers, and whether it goes as skipped."""
    return [([c.seq for c in f], i in delivery.skipped)  # type: ignore[attr-defined]
            for i, f in enumerate(delivery.frames)]  # type: ignore[attr-defined]


async def test_a_queued_picture_is_superseded_by_a_newer_one_of_the_same_canvas() -> None:
    viewer = Viewer(max_frames=100)
    viewer.skip_pictures()
    viewer.offer([*chunks(1, 2, {1}), picture(3, 7), picture(4, 8), *chunks(5, 5, set()),
                  picture(6, 7), picture(7, 7), *chunks(8, 8, set())])
    delivery = await viewer.next(0.1)
    # 3 and 6 are older pictures of canvas 7; canvas 8's only picture and every other
    # chunk go whole, and the sequence has no gap.
    assert runs(delivery) == [([1, 2], False), ([3], True), ([4, 5], False), ([6], True),
                              ([7, 8], False)]
    assert viewer.pictures_skipped == 2


async def test_a_picture_already_sent_is_never_superseded() -> None:
    viewer = Viewer(max_frames=100)
    viewer.skip_pictures()
    viewer.offer([*chunks(1, 1, {1}), picture(2, 7)])
    assert runs(await viewer.next(0.1)) == [([1, 2], False)]
    viewer.offer([picture(3, 7), picture(4, 7)])
    assert runs(await viewer.next(0.1)) == [([3], True), ([4], False)]
    assert viewer.pictures_skipped == 1


async def test_pictures_supersede_none_across_a_checkout() -> None:
    viewer = Viewer(max_frames=100)
    viewer.skip_pictures()
    viewer.offer([*chunks(1, 1, {1}), picture(2, 7), *chunks(3, 3, {3}), picture(4, 7)])
    assert runs(await viewer.next(0.1)) == [([1, 2], False), ([3, 4], False)]


async def test_consecutive_superseded_pictures_go_as_one_skipped_frame() -> None:
    viewer = Viewer(max_frames=100)
    viewer.skip_pictures()
    viewer.offer([*chunks(1, 1, {1}), picture(2, 7), picture(3, 8), picture(4, 7),
                  picture(5, 8)])
    assert runs(await viewer.next(0.1)) == [([1], False), ([2, 3], True), ([4, 5], False)]


async def test_a_viewer_that_did_not_ask_for_skips_gets_every_picture() -> None:
    viewer = Viewer(max_frames=100)
    viewer.offer([*chunks(1, 1, {1}), picture(2, 7), picture(3, 7), picture(4, 7)])
    assert runs(await viewer.next(0.1)) == [([1, 2, 3, 4], False)]
    assert viewer.pictures_skipped == 0


async def test_a_skipped_picture_takes_no_room_in_the_window() -> None:
    viewer = Viewer(max_frames=100)
    viewer.use_acks(window_bytes=10)
    viewer.skip_pictures()
    viewer.offer([*chunks(1, 1, {1}), *(picture(s, 7) for s in range(2, 6))])
    # Chunks of 1 and 4 bytes: 2..4 are superseded and weigh nothing, 5 crosses the window.
    assert runs(await viewer.next(0.1)) == [([1], False), ([2, 3, 4], True), ([5], False)]


async def test_a_slow_viewer_moved_to_a_checkout_forgets_what_it_superseded() -> None:
    viewer = Viewer(max_frames=4)
    viewer.skip_pictures()
    viewer.offer([*chunks(1, 1, {1}), picture(2, 7), picture(3, 7), *chunks(4, 6, set()),
                  *chunks(7, 7, {7}), picture(8, 7), picture(9, 7)])
    delivery = await viewer.next(0.1)
    assert delivery.reset == "slow_viewer"
    assert runs(delivery) == [([7], False), ([8], True), ([9], False)]
