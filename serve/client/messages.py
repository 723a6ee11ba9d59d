"""What a protocol v1 client says and reads as text: one place builds `hello` and `ack`,
one place parses the server's control messages into the typed models of
pipeline/protocol.py, which the gateway sends from."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from pipeline.protocol import (
    PROTOCOL_MINOR,
    PROTOCOL_VERSION,
    Ack,
    CloseCode,
    ControlRefusal,
    ControlState,
    End,
    Error,
    HandBack,
    Hello,
    Input,
    InputEvent,
    InputRefusal,
    Reset,
    Status,
    TakeControl,
    Welcome,
)
from serve.client.errors import ProtocolError

ControlMessage = (Welcome | Status | Reset | End | Error | ControlState | ControlRefusal
                  | InputRefusal)
_CONTROL: TypeAdapter[ControlMessage] = TypeAdapter(
    Annotated[ControlMessage, Field(discriminator="type")])

# Closes after which reconnecting cannot help: the session ended, or the server refused
# this client (bad hello, token refused, forbidden, unknown id). 4403 is reserved for
# access control that answers "forbidden".
FINAL_CLOSE_CODES = frozenset({CloseCode.SESSION_ENDED, CloseCode.BAD_HELLO,
                               CloseCode.UNAUTHORIZED, 4403, CloseCode.UNKNOWN_SESSION})
# What a client closes with when it leaves a connection to open another (RFC 6455 lets
# applications use 4000-4999; the web viewer uses the same).
CLIENT_RECONNECTS = 4000


def hello(resume_after: int | None, *, acks: bool, token: str | None = None,
          control: bool = False, skips: bool = False) -> str:
    """The first message on every connection; `control` asks for protocol 1.1 (taking
    control of the page)."""
    message = Hello(protocol=PROTOCOL_VERSION, resume_after=resume_after, token=token,
                    acks=acks, skips=skips, minor=PROTOCOL_MINOR if control else 0)
    # Fields left at their default are left out: the hello of 1.0 as it was, which a
    # gateway without them (its Hello forbids unknown fields) accepts.
    left_out = {name for name, asked in (("minor", control), ("skips", skips)) if not asked}
    return message.model_dump_json(exclude=left_out or None)


def take_control() -> str:
    return TakeControl().model_dump_json()


def hand_back() -> str:
    return HandBack().model_dump_json()


def input_message(events: list[InputEvent], seq: int | None) -> str:
    """Input for the page (1.1); `seq`: the newest batch applied when the person acted."""
    return Input(seq=seq, events=events).model_dump_json()


def ack(seq: int) -> str:
    """"I applied every batch up to `seq`" (flow control)."""
    return Ack(seq=seq).model_dump_json()


def parse_control(text: str | bytes) -> ControlMessage:
    """A text frame from the server as its typed message."""
    try:
        return _CONTROL.validate_json(text)
    except ValidationError as exc:
        shown = text[:200] if isinstance(text, str) else text[:200].decode(errors="replace")
        raise ProtocolError(f"unreadable control message {shown!r}: "
                            f"{exc.errors()[0]['msg']}") from None


__all__ = ["CLIENT_RECONNECTS", "FINAL_CLOSE_CODES", "ControlMessage", "ack", "hand_back",
           "hello", "input_message", "parse_control", "take_control"]
