"""The client's exceptions; httpx and websockets errors are translated into these at the edge.

ClientError
 ├── ApiError            the gateway answered a REST call with an error status
 ├── GatewayUnreachable  no answer at all: refused, reset, timed out
 ├── ConnectFailed       a viewer's WebSocket could not be opened
 ├── StreamClosed        a viewer's connection closed (its code and reason are kept)
 ├── ExportFailed        an export job ended failed (its reason is kept)
 └── ProtocolError       the server sent something protocol v1 does not allow
      ├── SequenceGap    a frame without RESET that does not continue the sequence
      └── BadFrame       a frame that cannot be read or decoded
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Root of every error the rrstream client raises."""


class ApiError(ClientError):
    """An HTTP error answer. Its text is the server's `message` (else `detail`, else the
    body), because that is what the server wrote for a person to read."""

    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        self.status = status
        self.message = message
        self.detail = detail
        super().__init__(message)


class GatewayUnreachable(ClientError):
    def __init__(self, base_url: str, reason: str) -> None:
        self.base_url = base_url
        self.reason = reason
        super().__init__(f"cannot reach the gateway at {base_url}: {reason}")


class ConnectFailed(ClientError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot open {url}: {reason}")


class StreamClosed(ClientError):
    """The connection is over. `code` is the close code received (1006 when the connection
    dropped without a close frame), `reason` the close reason."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"stream closed with {code}" + (f": {reason}" if reason else ""))


class ExportFailed(ClientError):
    """An export job failed; `reason` is the server's, in words."""

    def __init__(self, job_id: str, reason: str) -> None:
        self.job_id = job_id
        self.reason = reason
        super().__init__(f"export {job_id} failed: {reason}")


class ProtocolError(ClientError):
    """The server broke protocol v1 (docs/protocol.md)."""


class SequenceGap(ProtocolError):
    """`expected` is the sequence number the frame had to start at (None: the viewer had no
    state, so only a RESET frame could start it); `got` is the frame's first_seq."""

    def __init__(self, expected: int | None, got: int) -> None:
        self.expected = expected
        self.got = got
        wanted = "a RESET frame" if expected is None else f"batch {expected}"
        super().__init__(f"gap in the stream: expected {wanted}, got batch {got}")


class BadFrame(ProtocolError):
    pass


__all__ = ["ApiError", "BadFrame", "ClientError", "ConnectFailed", "ExportFailed",
           "GatewayUnreachable", "ProtocolError", "SequenceGap", "StreamClosed"]
