"""Wire protocol v1 between the gateway and viewers (docs/protocol.md).

Binary frames: a fixed little-endian header, the session id, then compressed
batches. Text frames: JSON control messages, typed here.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL_VERSION = 1

_HEADER = struct.Struct("<BBHIQQdddB")
FLAG_SEGMENT_START = 0x01
FLAG_RESET = 0x02
FLAG_SKIPPED = 0x04  # superseded canvas pictures: no payload, nothing to decode


class CloseCode(enum.IntEnum):
    SESSION_ENDED = 1000
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # the gateway replica is stopping: reconnect (to another)
    TRY_AGAIN_LATER = 1013  # a part the stream needs is being restarted: reconnect soon
    BAD_HELLO = 4400
    UNAUTHORIZED = 4401  # no token, or a malformed, forged, expired or revoked one
    FORBIDDEN = 4403  # a valid token, but for another session or a role that may not
    UNKNOWN_SESSION = 4404
    HELLO_TIMEOUT = 4408


@dataclass(slots=True, frozen=True)
class Chunk:
    """One page batch after the streamer numbered and compressed it."""

    seq: int
    segment_start: bool
    event_count: int
    first_ts: float
    last_ts: float
    ingest_ts: float
    payload: bytes
    # The canvas (rrweb node id) this chunk is a picture of, when its payload may be left
    # out for a live viewer once a newer picture of that canvas is queued (a sealed
    # payload: pipeline/codec.py); None for every other chunk.
    picture_of: int | None = None


class FrameHeader(NamedTuple):
    """A binary frame's header. A tuple: viewers (and the benchmarks' swarm of hundreds of
    them) read one per frame, and a tuple is 3x cheaper to make than a frozen dataclass."""

    flags: int
    event_count: int
    first_seq: int
    last_seq: int
    first_ts: float
    last_ts: float
    ingest_ts: float
    session_id: str
    header_length: int

    @property
    def segment_start(self) -> bool:
        return bool(self.flags & FLAG_SEGMENT_START)

    @property
    def reset(self) -> bool:
        return bool(self.flags & FLAG_RESET)

    @property
    def skipped(self) -> bool:
        return bool(self.flags & FLAG_SKIPPED)


def encode_frame(session_id: str, chunks: list[Chunk], *, reset: bool = False,
                 skipped: bool = False) -> bytes:
    """Joins consecutive chunks of one segment into one binary frame. `skipped`: the chunks
    are superseded canvas pictures, sent as their sequence numbers only (FLAG_SKIPPED)."""
    if not chunks:
        raise ValueError("a frame needs at least one chunk")
    if any(c.segment_start for c in chunks[1:]):
        raise ValueError("a frame must not span two segments")
    first, last = chunks[0], chunks[-1]
    if last.seq - first.seq != len(chunks) - 1:
        raise ValueError("chunks in a frame must be consecutive")
    flags = FLAG_SEGMENT_START if first.segment_start else 0
    if reset:
        if not first.segment_start:
            raise ValueError("a reset frame must start a segment")
        flags |= FLAG_RESET
    if skipped:
        if any(c.picture_of is None for c in chunks):
            raise ValueError("only canvas pictures may be skipped")
        flags |= FLAG_SKIPPED
    sid = session_id.encode("ascii")
    events = 0 if skipped else sum(c.event_count for c in chunks)
    header = _HEADER.pack(
        PROTOCOL_VERSION, flags, _HEADER.size + len(sid), events,
        first.seq, last.seq, first.first_ts, last.last_ts, last.ingest_ts, len(sid),
    )
    if skipped:
        return header + sid
    return b"".join([header, sid, *(c.payload for c in chunks)])


def mark_reset(frame: bytes) -> bytes:
    """The same frame with the RESET flag set; it must start a segment."""
    if not frame[1] & FLAG_SEGMENT_START:
        raise ValueError("a reset frame must start a segment")
    return b"".join([frame[:1], bytes([frame[1] | FLAG_RESET]), frame[2:]])


def decode_frame(frame: bytes) -> tuple[FrameHeader, bytes]:
    """Splits a binary frame into its header and compressed payload."""
    if len(frame) < _HEADER.size:
        raise ValueError(f"frame too short: {len(frame)} bytes")
    (version, flags, header_length, count, first_seq, last_seq, first_ts, last_ts, ingest_ts,
     sid_len) = _HEADER.unpack_from(frame)
    if version != PROTOCOL_VERSION:
        raise ValueError(f"unsupported frame version {version}")
    sid = frame[_HEADER.size:_HEADER.size + sid_len].decode("ascii")
    header = FrameHeader(flags, count, first_seq, last_seq, first_ts, last_ts, ingest_ts, sid,
                         header_length)
    return header, frame[header_length:]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hello(_Message):
    type: Literal["hello"] = "hello"
    protocol: int = Field(ge=1)
    resume_after: int | None = Field(default=None, ge=0)
    token: str | None = Field(default=None, max_length=4096)
    acks: bool = Field(
        default=False, description="The client will send `ack`s: the server then keeps at most "
        "a window of unacknowledged bytes in flight to it."
    )
    skips: bool = Field(
        default=False, description="The client understands SKIPPED frames: a canvas picture "
        "that a newer one of the same canvas superseded while queued may be sent as one."
    )


class Ack(_Message):
    """The client applied every batch up to and including `seq`."""

    type: Literal["ack"] = "ack"
    seq: int = Field(ge=0)


class Welcome(_Message):
    type: Literal["welcome"] = "welcome"
    protocol: int = PROTOCOL_VERSION
    session_id: str
    codec: str
    resume: Literal["continue", "reset"]
    state: str


class Status(_Message):
    type: Literal["status"] = "status"
    state: str
    url: str | None = None
    events: int = 0
    batches: int = 0
    bytes_raw: int = 0
    bytes_compressed: int = 0
    viewers: int = 0
    step: int | None = None
    steps_total: int = 0
    error: str | None = None


# Why a viewer starts over at a checkout (docs/protocol.md, `reset`).
ResetReason = Literal["join", "gap", "slow_viewer", "restart"]


class Reset(_Message):
    type: Literal["reset"] = "reset"
    reason: ResetReason
    seq: int


class End(_Message):
    type: Literal["end"] = "end"
    reason: Literal["stopped", "failed"]
    state: str


class Error(_Message):
    type: Literal["error"] = "error"
    code: int
    message: str


ClientMessage = Annotated[Hello | Ack, Field(discriminator="type")]
CLIENT_MESSAGE: TypeAdapter[Hello | Ack] = TypeAdapter(ClientMessage)

__all__ = [
    "CLIENT_MESSAGE",
    "Ack",
    "FLAG_RESET",
    "FLAG_SEGMENT_START",
    "FLAG_SKIPPED",
    "PROTOCOL_VERSION",
    "Chunk",
    "CloseCode",
    "End",
    "Error",
    "FrameHeader",
    "Hello",
    "PageBatch",
    "Reset",
    "ResetReason",
    "Status",
    "Welcome",
    "decode_frame",
    "encode_frame",
    "mark_reset",
]


@dataclass(slots=True, frozen=True)
class PageBatch:
    """What the page flushed at once: a JSON array of rrweb events, unparsed."""

    checkout: bool
    event_count: int
    first_ts: float
    last_ts: float
    text: str
    canvas_chars: int = 0  # of canvas pictures (a share of `text`)
    # Set on a batch the session made itself to record an error (pipeline/session.py):
    # the recording counts it, without parsing events.
    error: str | None = None
    # The assets (their ids) the session's rewrite made the batch name instead of their
    # URLs (pipeline/asset_urls.py): its recording keeps a copy of each.
    assets: tuple[str, ...] = ()
    # The canvas (rrweb node id) whose whole picture this batch is, and nothing else: the
    # in-page batcher sends each picture in a batch of its own (frontend/src/recorder.js).
    picture_of: int | None = None

    @classmethod
    def parse(cls, message: str) -> PageBatch:
        """Reads `checkout|count|first_ts|last_ts|canvas_chars|picture_of|[events]` as the
        in-page batcher writes it (`picture_of` empty for a batch that is no picture)."""
        checkout, count, first_ts, last_ts, canvas, picture, text = message.split("|", 6)
        return cls(checkout == "1", int(count), float(first_ts), float(last_ts), text,
                   int(canvas), picture_of=int(picture) if picture else None)
