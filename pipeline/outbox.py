"""Outbox: a session's batches on their way to its stream, in order.

The page's recorder calls `receiver` for every batch; a sender task hands on as many as
piled up per push. Its stream can go away (the node's streamer actor died) and be
reopened in a new epoch: `attach` switches to the new sink, drops what was queued for the
old one, and lets batches through again from the page's next checkout, so the new stream
starts with a segment. Nothing but a list append and an event set is on the per-batch
path: a different `receiver` function is swapped in instead of testing a state per batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from pipeline.protocol import PageBatch

_log = logging.getLogger(__name__)


class BatchSink(Protocol):
    """Where a session's batches go, in order (its stream in the node's streamer actor in
    production: pipeline/actors.py)."""

    async def push(self, batches: list[PageBatch]) -> int: ...

    async def close(self) -> None: ...


class Outbox:
    """`on_failure(exc)` is called when a push to the current sink fails, and says whether
    the outbox should wait for `attach` (True) or stop sending (False). `on_receiver` is
    called with the new receiver whenever it changes (the recorder calls that one).
    `on_sent(batches)`, if given, is told what each push handed on (the session's event
    rate is measured there, once per push rather than per batch). `prepare(batches)`, if
    given, makes what each push hands on from what the page sent (the session names its
    captured assets there: pipeline/asset_urls.py)."""

    def __init__(self, sink: BatchSink | None, on_failure: Callable[[Exception], bool],
                 on_receiver: Callable[[Callable[[PageBatch], None]], None],
                 on_sent: Callable[[list[PageBatch]], None] | None = None,
                 prepare: Callable[[list[PageBatch]], list[PageBatch]] | None = None) -> None:
        self.sink = sink
        self.receiver: Callable[[PageBatch], None] = self._enqueue
        self._queued: list[PageBatch] = []
        self._ready = asyncio.Event()
        self._on_failure = on_failure
        self._on_receiver = on_receiver
        self._on_sent = on_sent
        self._prepare = prepare
        self._sender: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def queued(self) -> int:
        return len(self._queued)

    def start(self) -> None:
        if self._sender is None:
            self._sender = asyncio.create_task(self._send(), name="send-batches")

    def attach(self, sink: BatchSink) -> None:
        """Sends to `sink` from the next checkout on; what was queued is dropped."""
        self.sink = sink
        self._queued = []
        self._set_receiver(self._enqueue_from_checkout)

    def suspend(self) -> None:
        """The stream is lost: drop what is queued and what comes until `attach`."""
        self._queued = []
        self._set_receiver(self._discard)

    async def drain(self, seconds: float) -> bool:
        """Hands on what is queued, then stops; False if that took longer than `seconds`."""
        sender, self._sender = self._sender, None
        if sender is None:
            return True
        self._closing = True
        self._ready.set()
        try:
            # Shield only the final flush: what was recorded must reach the streamer.
            await asyncio.wait_for(asyncio.shield(sender), seconds)
        except TimeoutError:
            sender.cancel()
            return False
        return True

    def _set_receiver(self, receiver: Callable[[PageBatch], None]) -> None:
        self.receiver = receiver
        self._on_receiver(receiver)

    def _enqueue(self, batch: PageBatch) -> None:
        self._queued.append(batch)
        self._ready.set()

    def _enqueue_from_checkout(self, batch: PageBatch) -> None:
        if not batch.checkout:
            return  # the stream was reopened and starts at the next checkout
        self._set_receiver(self._enqueue)
        self._enqueue(batch)

    def _discard(self, batch: PageBatch) -> None:
        """While the stream is lost: the reopened one starts at a new checkout anyway."""

    async def _send(self) -> None:
        """Hands batches on in order, as many per call as have piled up."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queued:
                batches, self._queued = self._queued, []
                if self._prepare is not None:
                    batches = self._prepare(batches)
                sink = self.sink
                try:
                    assert sink is not None
                    await sink.push(batches)
                except Exception as exc:
                    if sink is not self.sink:
                        continue  # meant for a stream `attach` already replaced
                    if not self._on_failure(exc) or self._closing:
                        return
                    break
                if self._on_sent is not None:
                    self._on_sent(batches)
            if self._closing:
                return


__all__ = ["BatchSink", "Outbox"]
