"""Binary frames as a client reads them: the header, the payload through the segment codec,
the sequence check, and the rrweb events, parsed only when asked for.

At 100k events/s building a Python object per event costs more than the rest of a client
together, so a Frame keeps the decoded text (one JSON array per batch, one per line) and
parses it on first use of `events`; `text` is there for a regular expression, `header` for
a client that reads nothing else.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import lz4.block
import orjson

from pipeline.codec import SegmentDecoder, make_decoder
from pipeline.protocol import FrameHeader, decode_frame
from pipeline.recording import iter_records
from serve.client.errors import BadFrame, SequenceGap


class EventType(enum.IntEnum):
    """rrweb's event types (rrweb `packages/types`)."""

    DOM_CONTENT_LOADED = 0
    LOAD = 1
    FULL_SNAPSHOT = 2
    INCREMENTAL_SNAPSHOT = 3
    META = 4
    CUSTOM = 5
    PLUGIN = 6


@dataclass(slots=True, eq=False)
class Frame:
    """One binary frame a viewer applied.

    `arrival_ms`: wall time (ms since the epoch, the protocol's unit) when the socket handed
    the frame over, before anything was decoded; None for a frame read from a stored
    recording. `text`: the decoded payload, None when the viewer does not decode.
    `reset_reason`: for a RESET frame, the reason of the `reset` message that announced it
    (None if none did). `connection`: which of the viewer's connections carried it (from 1).
    """

    header: FrameHeader
    size: int
    arrival_ms: float | None
    text: bytes | None
    reset_reason: str | None = None
    connection: int = 0
    _events: list[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def batch_count(self) -> int:
        return self.header.last_seq - self.header.first_seq + 1

    @property
    def skipped(self) -> bool:
        """A SKIPPED frame: its batches were canvas pictures a newer one superseded; it
        holds none of them (no lines, no events)."""
        return self.header.skipped

    @property
    def lines(self) -> list[bytes]:
        """One JSON array of rrweb events per batch, in sequence order."""
        return self._text().split(b"\n")[:-1]

    @property
    def batches(self) -> list[tuple[int, bytes]]:
        """(sequence number, batch text) for every batch of the frame; none for a skipped
        frame."""
        if self.skipped:
            return []
        return list(zip(range(self.header.first_seq, self.header.last_seq + 1), self.lines,
                        strict=True))

    @property
    def events(self) -> list[dict[str, Any]]:
        """The frame's rrweb events, parsed on first use."""
        if self._events is None:
            events = [event for line in self.lines for event in orjson.loads(line)]
            if len(events) != self.header.event_count:
                raise BadFrame(f"frame {self.header.first_seq}..{self.header.last_seq} says "
                               f"{self.header.event_count} events and holds {len(events)}")
            self._events = events
        return self._events

    def has_event(self, kind: int) -> bool:
        """Whether an event of rrweb type `kind` is in the frame. A substring test (the page's
        JSON.stringify writes `"type":N`) spares parsing frames that cannot have one."""
        if f'"type":{int(kind)}'.encode() not in self._text():
            return False
        return any(event.get("type") == kind for event in self.events)

    @property
    def full_snapshot(self) -> bool:
        """Whether the frame brings a FullSnapshot: the page can be shown from it."""
        return self.has_event(EventType.FULL_SNAPSHOT)

    def _text(self) -> bytes:
        if self.text is None:
            raise ValueError("this frame was not decoded (the viewer runs with decode=False)")
        return self.text


class StreamDecoder:
    """Reads one stream's frames in order and keeps what that needs across connections: the
    segment codec's context and the last sequence number applied.

    A frame without RESET must continue the sequence (docs/protocol.md); anything else
    raises SequenceGap and changes nothing, so the caller decides what to do (the protocol
    says: drop the state, `reset()`, and join again).
    """

    def __init__(self, codec: str, *, decode: bool = True) -> None:
        self.codec = codec
        self._segment: SegmentDecoder | None = make_decoder(codec) if decode else None
        self.last_seq: int | None = None

    def reset(self) -> None:
        """Drops the state: only a frame that starts over (RESET) is accepted next."""
        if self._segment is not None:
            self._segment = make_decoder(self.codec)
        self.last_seq = None

    def read(self, data: bytes, arrival_ms: float | None, *, starts_over: bool = False) -> Frame:
        """The frame `data`, checked and decoded. `starts_over`: treat it as a RESET frame
        (stored recordings carry no RESET flag where a restarted session began again)."""
        try:
            header, payload = decode_frame(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadFrame(f"unreadable frame: {exc}") from exc
        span = f"frame {header.first_seq}..{header.last_seq}"
        if header.last_seq < header.first_seq:
            raise BadFrame(f"{span}: its last batch comes before its first")
        if header.skipped and (header.segment_start or header.reset or payload):
            raise BadFrame(f"{span} is skipped but starts a segment or has a payload")
        if header.reset or starts_over:
            if not header.segment_start:
                raise BadFrame(f"{span} starts over but does not start a segment")
        elif self.last_seq is None or header.first_seq != self.last_seq + 1:
            raise SequenceGap(None if self.last_seq is None else self.last_seq + 1,
                              header.first_seq)
        text = None
        if self._segment is not None and header.skipped:
            text = b""  # superseded pictures: their payloads never entered the stream
        elif self._segment is not None:
            try:
                text = self._segment.decode(payload, segment_start=header.segment_start)
            except (ValueError, zlib.error, lz4.block.LZ4BlockError) as exc:
                raise BadFrame(f"{span} does not decode as {self.codec}: {exc}") from exc
            lines = text.count(b"\n")
            if lines != header.last_seq - header.first_seq + 1 or not text.endswith(b"\n"):
                raise BadFrame(f"{span} decodes to {lines} lines for "
                               f"{header.last_seq - header.first_seq + 1} batches")
        self.last_seq = header.last_seq
        return Frame(header, len(data), arrival_ms, text)


def stored_frames(data: bytes, codec: str) -> Iterator[Frame]:
    """The frames of a stored recording (`GET /recordings/{id}/frames`), decoded. Where the
    sequence jumps at a segment start, the session was started again after its node was
    lost (a new epoch): the frame starts over, as the replay's RESET frame does there."""
    decoder = StreamDecoder(codec)
    for record in iter_records(data):
        header, _ = decode_frame(record)
        jumps = decoder.last_seq is None or header.first_seq != decoder.last_seq + 1
        yield decoder.read(record, None, starts_over=jumps and header.segment_start)


__all__ = ["EventType", "Frame", "StreamDecoder", "stored_frames"]
