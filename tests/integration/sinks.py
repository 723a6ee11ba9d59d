"""A BatchSink that keeps what it is given (and can fail on demand), for session tests."""

from __future__ import annotations

import orjson

from pipeline.protocol import PageBatch


class ListSink:
    """Keeps every batch pushed to it; `fail` makes pushes raise, as a stream whose
    streamer actor died would."""

    def __init__(self, name: str = "sink") -> None:
        self.name = name
        self.batches: list[PageBatch] = []
        self.fail = False
        self.closed = False
        self.failed_pushes = 0

    async def push(self, batches: list[PageBatch]) -> int:
        if self.fail:
            self.failed_pushes += 1
            raise ConnectionError(f"{self.name}: the stream's actor died")
        self.batches.extend(batches)
        return len(self.batches)

    async def close(self) -> None:
        self.closed = True

    def events(self) -> list[dict]:
        return [event for b in self.batches for event in orjson.loads(b.text)]

    def text(self) -> str:
        return "".join(b.text for b in self.batches)

    def snapshots(self) -> int:
        return sum(1 for e in self.events() if e["type"] == 2)
