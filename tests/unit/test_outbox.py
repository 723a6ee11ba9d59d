"""Outbox with fake sinks: order, a failed push, a reopened stream starting at a checkout."""

from __future__ import annotations

import asyncio

from pipeline.outbox import Outbox
from pipeline.protocol import PageBatch


class Sink:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.pushes: list[list[str]] = []
        self.gate: asyncio.Event | None = None  # set: pushes wait for it

    async def push(self, batches: list[PageBatch]) -> int:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("the streamer actor died")
        self.pushes.append([b.text for b in batches])
        return len(self.pushes)

    async def close(self) -> None:
        pass

    @property
    def texts(self) -> list[str]:
        return [t for push in self.pushes for t in push]


def batch(text: str, checkout: bool = False) -> PageBatch:
    return PageBatch(checkout, 1, 0.0, 0.0, text)


class Owner:
    """What the session does: keeps the receiver the recorder calls, decides on failures."""

    def __init__(self, wait_for_attach: bool) -> None:
        self.wait_for_attach = wait_for_attach
        self.failures: list[str] = []
        self.receiver = None

    def failed(self, exc: Exception) -> bool:
        self.failures.append(str(exc))
        return self.wait_for_attach

    def use(self, receiver) -> None:
        self.receiver = receiver


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_batches_go_in_order_as_many_per_push_as_piled_up() -> None:
    sink, owner = Sink(), Owner(True)
    outbox = Outbox(sink, owner.failed, owner.use)
    outbox.start()
    sink.gate = asyncio.Event()
    for i in range(5):
        outbox.receiver(batch(str(i)))
    await settle()
    sink.gate.set()
    for i in range(5, 8):
        outbox.receiver(batch(str(i)))
    assert await outbox.drain(1.0)
    assert sink.texts == [str(i) for i in range(8)]
    assert len(sink.pushes) < 8


async def test_a_failed_push_stops_the_outbox_when_its_owner_says_so() -> None:
    sink, owner = Sink(fail=True), Owner(False)
    outbox = Outbox(sink, owner.failed, owner.use)
    outbox.start()
    outbox.receiver(batch("a"))
    await settle()
    assert owner.failures == ["the streamer actor died"]
    assert await outbox.drain(1.0)


async def test_a_reopened_stream_gets_nothing_before_the_next_checkout() -> None:
    old, new, owner = Sink(fail=True), Sink(), Owner(True)
    outbox = Outbox(old, owner.failed, owner.use)
    outbox.start()
    outbox.receiver(batch("lost"))
    await settle()
    assert owner.failures == ["the streamer actor died"]
    outbox.suspend()  # the session, waiting for a new stream
    owner.receiver(batch("while lost"))
    outbox.attach(new)
    owner.receiver(batch("incremental before the checkout"))
    owner.receiver(batch("checkout", checkout=True))
    assert owner.receiver == outbox.receiver
    owner.receiver(batch("after"))
    assert await outbox.drain(1.0)
    assert new.texts == ["checkout", "after"]
    assert owner.failures == ["the streamer actor died"], "one failure, told once"


async def test_a_push_to_a_stream_already_replaced_is_not_a_failure() -> None:
    old, new, owner = Sink(fail=True), Sink(), Owner(True)
    old.gate = asyncio.Event()
    outbox = Outbox(old, owner.failed, owner.use)
    outbox.start()
    outbox.receiver(batch("in flight to the old stream"))
    await settle()
    outbox.attach(new)  # while the push to the old one hangs
    old.gate.set()
    await settle()
    assert owner.failures == []
    owner.receiver(batch("checkout", checkout=True))
    assert await outbox.drain(1.0)
    assert new.texts == ["checkout"]


async def test_drain_gives_up_at_its_bound() -> None:
    sink, owner = Sink(), Owner(True)
    sink.gate = asyncio.Event()  # never set: the stream hangs
    outbox = Outbox(sink, owner.failed, owner.use)
    outbox.start()
    outbox.receiver(batch("a"))
    assert not await outbox.drain(0.05)


async def test_each_push_hands_on_what_prepare_made_of_the_page_batches() -> None:
    sink, owner = Sink(), Owner(True)
    prepared: list[int] = []

    def upper(batches: list[PageBatch]) -> list[PageBatch]:
        prepared.append(len(batches))
        return [batch(b.text.upper(), b.checkout) for b in batches]

    outbox = Outbox(sink, owner.failed, owner.use, prepare=upper)
    outbox.start()
    for text in ("a", "b"):
        outbox.receiver(batch(text))
    assert await outbox.drain(1.0)
    assert sink.texts == ["A", "B"] and sum(prepared) == 2
