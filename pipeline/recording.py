"""Recordings: each session's stream, stored on its streamer's node for later replay.

`<dir>/<id>.frames` is a sequence of records, each a 4-byte little-endian length and
one protocol v1 binary frame holding one batch, `encode_frame(id, [chunk])`: the very
bytes the streamer compressed once for viewers, segment flags included, so a reader
decodes it from any segment start exactly as a viewer does. `<dir>/<id>.json` holds
its RecordingInfo, rewritten at every segment start and when the recording closes.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from pipeline.config import Settings
from pipeline.errors import RecordingNotFound
from pipeline.models import RecordingInfo
from pipeline.protocol import Chunk, decode_frame, encode_frame

_LENGTH = struct.Struct("<I")
_HEADER_PEEK = 256  # a frame header and its session id fit in this
# Session ids are hex tokens; anything else (a path, `..`) names no recording.
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_log = logging.getLogger(__name__)


class RecordingWriter:
    """Appends one session's chunks to its recording, in the order the streamer numbered
    them. The files appear with the first chunk, so a stream that never carried a batch
    (a warm browser that was never used) leaves nothing behind. An I/O error (a full
    disk) is logged once and ends the recording; the stream goes on without it."""

    def __init__(self, directory: Path, session_id: str, codec: str) -> None:
        self._directory = directory
        self._frames_path = directory / f"{session_id}.frames"
        self._info_path = directory / f"{session_id}.json"
        self._info = RecordingInfo(id=session_id, codec=codec, created_at=time.time())
        self._file: BinaryIO | None = None
        self._failed = False
        self._closed = False

    def append(self, chunk: Chunk) -> None:
        if self._failed or self._closed:
            return
        try:
            if self._file is None:
                self._file = self._open()
            frame = encode_frame(self._info.id, [chunk])
            self._file.write(_LENGTH.pack(len(frame)))
            self._file.write(frame)
            info = self._info
            info.batches += 1
            info.events += chunk.event_count
            info.bytes_compressed += len(chunk.payload)
            info.first_seq = chunk.seq if info.first_seq is None else info.first_seq
            info.last_seq = chunk.seq
            if chunk.segment_start:
                # A recording cut short by a crash still lists what it held a checkout ago.
                self._file.flush()
                self._write_info()
        except OSError as exc:
            self._fail(exc)

    def close(self) -> None:
        """Flushes the frames and writes the final metadata; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._file is None or self._failed:
            return
        try:
            self._file.close()
            self._info.ended_at = time.time()
            self._write_info()
        except OSError as exc:
            self._fail(exc)

    def _open(self) -> BinaryIO:
        self._directory.mkdir(parents=True, exist_ok=True)
        if self._info_path.exists() or self._frames_path.exists():
            # The session's stream was opened again (its streamer restarted, or the session
            # was restarted on this node or on another sharing the directory): numbering
            # goes on after a RESET, and so does its recording, after what the earlier
            # writer left complete.
            self._info = _repaired(self._frames_path, self._info)
        return self._frames_path.open("ab")

    def _write_info(self) -> None:
        partial = self._info_path.with_suffix(".json.partial")
        partial.write_text(self._info.model_dump_json())
        os.replace(partial, self._info_path)

    def _fail(self, exc: OSError) -> None:
        self._failed = True
        _log.error("recording of session %s stopped: %s", self._info.id, exc,
                   extra={"session_id": self._info.id})
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # the same error again; it has been logged


class RecordingStore:
    """The recordings of one node: one directory of `.frames` and `.json` files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def from_settings(cls, settings: Settings) -> RecordingStore | None:
        """The node's store, or None when recording is off (an empty `recordings_dir`)."""
        if not settings.recordings_dir:
            return None
        return cls(Path(settings.recordings_dir).expanduser())

    def writer(self, session_id: str, codec: str) -> RecordingWriter:
        return RecordingWriter(self.directory, session_id, codec)

    def list(self) -> list[RecordingInfo]:
        """Every recording's metadata, newest first."""
        found = []
        for path in self.directory.glob("*.json"):
            try:
                found.append(RecordingInfo.model_validate_json(path.read_bytes()))
            except (OSError, ValidationError) as exc:
                _log.warning("skipping recording metadata %s: %s", path, exc)
        return sorted(found, key=lambda r: r.created_at, reverse=True)

    def info(self, recording_id: str) -> RecordingInfo:
        try:
            return RecordingInfo.model_validate_json(self._path(recording_id, ".json")
                                                     .read_bytes())
        except FileNotFoundError:
            raise RecordingNotFound(recording_id) from None

    def frames(self, recording_id: str) -> bytes:
        """The raw `.frames` file."""
        try:
            return self._path(recording_id, ".frames").read_bytes()
        except FileNotFoundError:
            raise RecordingNotFound(recording_id) from None

    def delete(self, recording_id: str) -> None:
        removed = False
        for suffix in (".frames", ".json"):
            try:
                self._path(recording_id, suffix).unlink()
                removed = True
            except FileNotFoundError:
                pass
        if not removed:
            raise RecordingNotFound(recording_id)

    def _path(self, recording_id: str, suffix: str) -> Path:
        if not _ID.fullmatch(recording_id):
            raise RecordingNotFound(recording_id)
        return self.directory / f"{recording_id}{suffix}"


def _repaired(frames_path: Path, info: RecordingInfo) -> RecordingInfo:
    """What an earlier writer left: its last record may be cut short (a streamer killed
    mid-write), and its metadata is as of its last checkout. Cuts the file after its last
    whole record and recounts what it holds, so appending after it corrupts nothing."""
    counted = info.model_copy(update={"batches": 0, "events": 0, "bytes_compressed": 0,
                                      "first_seq": None, "last_seq": None, "ended_at": None})
    try:
        earlier = RecordingInfo.model_validate_json(frames_path.with_suffix(".json")
                                                    .read_bytes())
        counted.created_at = earlier.created_at
    except (OSError, ValidationError):
        pass
    try:
        handle = frames_path.open("r+b")
    except FileNotFoundError:
        return counted
    with handle:
        size = handle.seek(0, os.SEEK_END)
        pos = 0
        while pos + _LENGTH.size <= size:
            handle.seek(pos)
            prefix = handle.read(_LENGTH.size + _HEADER_PEEK)
            (length,) = _LENGTH.unpack_from(prefix)
            if pos + _LENGTH.size + length > size:
                break
            try:  # the header and session id; the payload is not needed
                header, _ = decode_frame(prefix[_LENGTH.size:_LENGTH.size
                                                + min(length, _HEADER_PEEK)])
            except ValueError:
                break
            counted.batches += 1
            counted.events += header.event_count
            counted.bytes_compressed += length - header.header_length
            counted.first_seq = header.first_seq if counted.first_seq is None else \
                counted.first_seq
            counted.last_seq = header.last_seq
            pos += _LENGTH.size + length
        if pos < size:
            _log.warning("recording %s: %d bytes of a record cut short were dropped",
                         info.id, size - pos)
            handle.truncate(pos)
    return counted


def iter_frames(data: bytes) -> Iterator[bytes]:
    """The binary frames of a `.frames` file, in order. A record cut short at the end (the
    node died mid-write) ends the iteration."""
    view = memoryview(data)
    pos = 0
    while pos + _LENGTH.size <= len(view):
        (length,) = _LENGTH.unpack_from(view, pos)
        pos += _LENGTH.size
        if pos + length > len(view):
            return
        yield bytes(view[pos:pos + length])
        pos += length


__all__ = ["RecordingStore", "RecordingWriter", "iter_frames"]
