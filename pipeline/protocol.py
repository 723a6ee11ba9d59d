"""Wire protocol v1 between the gateway and viewers (docs/protocol.md).

Binary frames: a fixed little-endian header, the session id, then compressed
batches. Text frames: JSON control messages, typed here, and those of minor version 1.1
(taking control of the page from a viewer: `take_control`, `hand_back`, `input`, and the
server's `control`, `control_refused`, `input_refused`), sent only to clients whose hello
asked for `minor: 1`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL_VERSION = 1
# 1.1: a viewer with a control link takes control of the page (docs/protocol.md, "Taking
# control"). A client that says nothing of a minor version gets 1.0, unchanged.
PROTOCOL_MINOR = 1

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
    minor: int = Field(default=0, ge=0, description="The newest minor version the client "
                       "speaks; 1 for the control messages of 1.1.")
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
    minor: int = PROTOCOL_MINOR  # the server's; the socket speaks min(this, hello's)
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


# -- 1.1: taking control of the page from a viewer ---------------------------------------
# Coordinates are CSS pixels of the recorded page's viewport (its top-left corner is 0, 0),
# as the replay shows it: what Playwright's page.mouse takes.
_COORD = 100_000.0
MAX_INPUT_EVENTS = 64  # in one `input` message
MouseButton = Literal["left", "middle", "right"]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MouseInput(_Input):
    kind: Literal["mouse"] = "mouse"
    action: Literal["move", "down", "up", "click"]
    x: float = Field(ge=-_COORD, le=_COORD)
    y: float = Field(ge=-_COORD, le=_COORD)
    button: MouseButton = "left"
    clicks: int = Field(default=1, ge=1, le=3, description="1, 2 for a double click, 3.")


class WheelInput(_Input):
    kind: Literal["wheel"] = "wheel"
    x: float = Field(ge=-_COORD, le=_COORD)
    y: float = Field(ge=-_COORD, le=_COORD)
    dx: float = Field(default=0.0, ge=-_COORD, le=_COORD)
    dy: float = Field(default=0.0, ge=-_COORD, le=_COORD)


class KeyInput(_Input):
    kind: Literal["key"] = "key"
    action: Literal["down", "up"]
    key: str = Field(min_length=1, max_length=32, description="KeyboardEvent.key: `a`, `A`, "
                     "`Enter`, `Shift`, `ArrowLeft`, ...")
    code: str | None = Field(default=None, max_length=32, description="KeyboardEvent.code.")


class TextInput(_Input):
    kind: Literal["text"] = "text"
    text: str = Field(min_length=1, max_length=1000, description="Text as typed at once "
                      "(a composition's result, a paste): inserted, no key events.")


InputEvent = Annotated[MouseInput | WheelInput | KeyInput | TextInput,
                       Field(discriminator="kind")]


class TakeControl(_Message):
    type: Literal["take_control"] = "take_control"


class HandBack(_Message):
    type: Literal["hand_back"] = "hand_back"


class Input(_Message):
    """Input for the page from the viewer in control. `seq`: the newest batch the viewer had
    applied when the person acted (what they saw)."""

    type: Literal["input"] = "input"
    seq: int | None = Field(default=None, ge=0)
    events: list[InputEvent] = Field(min_length=1, max_length=MAX_INPUT_EVENTS)


class ControlState(_Message):
    """Who is in control of the page: sent to 1.1 clients after `welcome` and whenever it
    changes. `holder` is the control link's label (None: the session drives itself)."""

    type: Literal["control"] = "control"
    holder: str | None = None
    you: bool = False
    can_take: bool = Field(default=False, description="This socket's token is a `control` "
                           "link's.")
    since: float | None = Field(default=None, description="Unix s, when it was taken.")
    until: float | None = Field(default=None, description="Unix s: the control link's "
                                "expiry, when control goes back by itself.")
    reason: str | None = Field(default=None, description="Why it changed: `taken`, "
                               "`handed_back`, `expired`, `closed` (the controller left), "
                               "`lost` (the session's actor was replaced).")


class ControlRefusal(_Message):
    """`take_control` refused: `held` (someone else is in control: `holder`), `state` (the
    session cannot be driven now: waiting, starting, stopping or ended)."""

    type: Literal["control_refused"] = "control_refused"
    reason: Literal["held", "state"]
    message: str
    holder: str | None = None


class InputRefusal(_Message):
    """Input not delivered: `behind` (the viewer had not seen the newest page, `lag_ms`
    behind), `not_in_control`. Sent at most once a second."""

    type: Literal["input_refused"] = "input_refused"
    reason: Literal["behind", "not_in_control"]
    message: str
    lag_ms: float | None = None


ClientMessage = Annotated[Hello | Ack | TakeControl | HandBack | Input,
                          Field(discriminator="type")]
CLIENT_MESSAGE: TypeAdapter[Hello | Ack | TakeControl | HandBack | Input] = TypeAdapter(
    ClientMessage)

__all__ = [
    "CLIENT_MESSAGE",
    "MAX_INPUT_EVENTS",
    "PROTOCOL_MINOR",
    "Ack",
    "ControlRefusal",
    "ControlState",
    "HandBack",
    "Input",
    "InputEvent",
    "InputRefusal",
    "KeyInput",
    "MouseButton",
    "MouseInput",
    "TakeControl",
    "TextInput",
    "WheelInput",
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
