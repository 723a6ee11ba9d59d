"""Checkout-aligned buffer of numbered chunks.

Keeps the current segment (from the last checkout on) and, within a byte and
segment cap, a few earlier ones, so a late joiner starts at a checkout and a
resuming viewer gets exactly what it missed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from pipeline.protocol import Chunk


@dataclass(slots=True, frozen=True)
class Catchup:
    """Chunks a reader should get next; `reset` when they restart at a checkout."""

    chunks: list[Chunk]
    reset: bool


class StreamBuffer:
    def __init__(self, max_bytes: int, max_segments: int) -> None:
        if max_segments < 1:
            raise ValueError("max_segments must be at least 1")
        self._max_bytes = max_bytes
        self._max_segments = max_segments
        self._segments: deque[list[Chunk]] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return sum(len(s) for s in self._segments)

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def first_seq(self) -> int | None:
        return self._segments[0][0].seq if self._segments else None

    @property
    def last_seq(self) -> int | None:
        return self._segments[-1][-1].seq if self._segments else None

    def append(self, chunk: Chunk) -> None:
        last = self.last_seq
        if last is not None and chunk.seq != last + 1:
            raise ValueError(f"chunk {chunk.seq} does not follow {last}")
        if chunk.segment_start or not self._segments:
            self._segments.append([])
        self._segments[-1].append(chunk)
        self._bytes += len(chunk.payload)
        # The current segment always stays, even over the cap: it is the join point.
        while len(self._segments) > 1 and (
            len(self._segments) > self._max_segments or self._bytes > self._max_bytes
        ):
            dropped = self._segments.popleft()
            self._bytes -= sum(len(c.payload) for c in dropped)

    def clear(self) -> None:
        self._segments.clear()
        self._bytes = 0

    def current_segment(self) -> list[Chunk]:
        return list(self._segments[-1]) if self._segments else []

    def after(self, seq: int | None) -> Catchup:
        """What follows `seq`: the missing chunks if buffered, else the current segment."""
        last = self.last_seq
        if seq is None or last is None:
            return Catchup(self.current_segment(), reset=True)
        if seq >= last:
            return Catchup([], reset=False) if seq == last else self._reset()
        first = self.first_seq
        assert first is not None
        if seq + 1 < first:
            return self._reset()
        out: list[Chunk] = []
        for segment in reversed(self._segments):
            if segment[-1].seq <= seq:
                break
            out[:0] = segment if segment[0].seq > seq else segment[seq + 1 - segment[0].seq:]
        return Catchup(out, reset=False)

    def _reset(self) -> Catchup:
        return Catchup(self.current_segment(), reset=True)


__all__ = ["Catchup", "StreamBuffer"]
