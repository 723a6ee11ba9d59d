"""FramePlan: which moments of a recording an export shows, and which of them need a new
screenshot.

Frame i of a video is the page `start + i/fps` after the recording's first event, with
every event up to that moment applied (the replayer's own clock, never the wall clock).
A frame with no event since the one before shows the same page, so it repeats that
frame's picture instead of taking another screenshot: idle stretches cost an encoder
frame each, not a render. Plain Python over event offsets (tests/unit/test_export_plan.py).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pipeline.export.errors import ExportFailed
from pipeline.export.models import ExportRequest

_FULL_SNAPSHOT = 2  # rrweb's EventType.FullSnapshot


@dataclass(slots=True, frozen=True)
class PlannedFrame:
    index: int
    offset_ms: int  # where the replayer's clock is put: events before it are applied
    capture: bool  # False: nothing happened since the frame before; repeat its picture


@dataclass(slots=True, frozen=True)
class Timeline:
    """A recording's events as the replayer's clock sees them: offsets from its first."""

    offsets: tuple[int, ...]  # every event's offset, sorted
    first_snapshot_ms: int  # the first FullSnapshot's offset: before it there is no page

    @classmethod
    def of(cls, events: Sequence[dict]) -> Timeline:
        if not events:
            raise ExportFailed("the recording holds no events")
        stamps = sorted(int(e["timestamp"]) for e in events)
        first = stamps[0]
        snapshots = [int(e["timestamp"]) - first for e in events if e.get("type") == _FULL_SNAPSHOT]
        if not snapshots:
            raise ExportFailed("the recording holds no full snapshot of a page, so there is "
                               "nothing to show")
        return cls(tuple(s - first for s in stamps), min(snapshots))

    @property
    def total_ms(self) -> int:
        return self.offsets[-1]

    def applied(self, offset_ms: int) -> int:
        """How many events the replayer has applied with its clock at `offset_ms`: those
        strictly before it (rrweb's `pause(offset)`)."""
        return bisect.bisect_left(self.offsets, offset_ms)


class FramePlan:
    def __init__(self, timeline: Timeline, request: ExportRequest) -> None:
        request = request.filled()
        self._timeline = timeline
        total = timeline.total_ms
        if request.format == "png":
            at = request.at_ms or 0
            if at > total:
                raise ExportFailed(f"at_ms {at} is past the recording's end ({total} ms)")
            self.start_ms, self.end_ms, self.fps = at, at, 1
            self.count, self.still = 1, True
            return
        start = request.start_ms or 0
        if start >= total:
            raise ExportFailed(f"start_ms {start} is not before the recording's end "
                               f"({total} ms)")
        end = min(request.end_ms if request.end_ms is not None else total, total)
        self.start_ms, self.end_ms, self.fps = start, end, request.fps or 10
        self.count, self.still = max(1, math.ceil((end - start) * self.fps / 1000)), False

    @property
    def duration_ms(self) -> int:
        """What the video lasts (`count` frames at `fps`); 0 for a still."""
        return 0 if self.still else round(self.count * 1000 / self.fps)

    def offset(self, index: int) -> int:
        """Where the replayer's clock stands for frame `index`: its moment, plus 1 ms so an
        event at exactly that moment is shown, and never before the first snapshot."""
        moment = self.start_ms + math.floor(index * 1000 / self.fps)
        return max(moment, self._timeline.first_snapshot_ms) + 1

    def __iter__(self) -> Iterator[PlannedFrame]:
        applied = None
        for index in range(self.count):
            offset = self.offset(index)
            now = self._timeline.applied(offset)
            yield PlannedFrame(index, offset, capture=now != applied)
            applied = now


__all__ = ["FramePlan", "PlannedFrame", "Timeline"]
