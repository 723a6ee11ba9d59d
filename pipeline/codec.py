"""Segment codecs: compress once, with a context that runs across a segment's batches.

Small batches of incremental events compress poorly on their own; a context
that carries across the batches of a segment sees the repetition between them.
The context restarts at every checkout, so a decoder can start at any segment.

A payload encoded with `seal=True` (a canvas picture, which a newer picture of the same
canvas supersedes) is one nothing after it refers to, so a live viewer may be sent a
segment without it (docs/protocol.md, "Skipped pictures"). Only deflate-raw can seal: a
full flush resets its dictionary. lz4-frame's linked blocks cannot forget their history.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import lz4.block
import lz4.frame


class SegmentEncoder(Protocol):
    name: str
    can_seal: bool  # whether `encode(..., seal=True)` makes a payload that may be left out

    def encode(self, data: bytes, *, segment_start: bool, seal: bool = False) -> bytes: ...


class SegmentDecoder(Protocol):
    def decode(self, payload: bytes, *, segment_start: bool) -> bytes: ...


class Lz4FrameEncoder:
    """One LZ4 frame per segment, linked blocks, flushed after every batch."""

    name = "lz4-frame"
    can_seal = False  # python-lz4 has no way to drop a linked frame's history mid-frame

    def __init__(self, compression_level: int = 0) -> None:
        self._level = compression_level
        self._compressor: lz4.frame.LZ4FrameCompressor | None = None

    def encode(self, data: bytes, *, segment_start: bool, seal: bool = False) -> bytes:
        if segment_start or self._compressor is None:
            self._compressor = lz4.frame.LZ4FrameCompressor(
                block_size=lz4.frame.BLOCKSIZE_MAX64KB,
                block_linked=True,
                compression_level=self._level,
                content_checksum=False,
                block_checksum=False,
                auto_flush=True,
            )
            return self._compressor.begin() + self._compressor.compress(data)
        return self._compressor.compress(data)


class Lz4FrameDecoder:
    """Decodes what Lz4FrameEncoder wrote, starting at any segment start.

    python-lz4's LZ4FrameDecompressor holds back output of linked blocks that
    arrive one flush at a time, so this walks the frame's blocks itself and
    decodes each with the segment's last 64 KiB as the dictionary, the way
    the viewer does.
    """

    _MAGIC = b"\x04\x22\x4d\x18"
    _WINDOW = 64 * 1024

    def __init__(self) -> None:
        self._history: bytes | None = None
        self._block_checksum = False

    def decode(self, payload: bytes, *, segment_start: bool) -> bytes:
        view = memoryview(payload)
        pos = 0
        if segment_start:
            pos = self._read_frame_header(view)
            self._history = b""
        if self._history is None:
            raise ValueError("cannot decode before the first segment start")
        out = bytearray()
        while pos < len(view):
            size = int.from_bytes(view[pos:pos + 4], "little")
            pos += 4
            if size == 0:  # EndMark: the frame is over
                break
            stored, size = bool(size & 0x80000000), size & 0x7FFFFFFF
            block = bytes(view[pos:pos + size])
            pos += size + (4 if self._block_checksum else 0)
            if stored:
                data = block
            else:
                data = lz4.block.decompress(
                    block, uncompressed_size=self._WINDOW, dict=self._history
                )
            out += data
            self._history = (self._history + data)[-self._WINDOW:]
        return bytes(out)

    def _read_frame_header(self, view: memoryview) -> int:
        if bytes(view[:4]) != self._MAGIC:
            raise ValueError("segment does not start with an LZ4 frame header")
        flg = view[4]
        self._block_checksum = bool(flg & 0x10)
        return 7 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0)


class DeflateRawEncoder:
    """A raw deflate stream per segment with a sync flush after every batch.

    Each batch's output ends on a byte boundary with everything decodable, and
    browsers inflate it natively (DecompressionStream("deflate-raw")). A sealed
    batch ends with a full flush instead: the same byte boundary, and the
    dictionary is emptied, so no later payload refers back into it (or past it).
    """

    name = "deflate-raw"
    can_seal = True

    def __init__(self, level: int = 6) -> None:
        self._level = level
        self._compressor: zlib._Compress | None = None

    def encode(self, data: bytes, *, segment_start: bool, seal: bool = False) -> bytes:
        if segment_start or self._compressor is None:
            self._compressor = zlib.compressobj(self._level, zlib.DEFLATED, -15)
        flush = zlib.Z_FULL_FLUSH if seal else zlib.Z_SYNC_FLUSH
        return self._compressor.compress(data) + self._compressor.flush(flush)


class DeflateRawDecoder:
    def __init__(self) -> None:
        self._decompressor: zlib._Decompress | None = None

    def decode(self, payload: bytes, *, segment_start: bool) -> bytes:
        if segment_start:
            self._decompressor = zlib.decompressobj(-15)
        if self._decompressor is None:
            raise ValueError("cannot decode before the first segment start")
        return self._decompressor.decompress(payload)


CODECS: dict[str, tuple[type[SegmentEncoder], type[SegmentDecoder]]] = {
    Lz4FrameEncoder.name: (Lz4FrameEncoder, Lz4FrameDecoder),
    DeflateRawEncoder.name: (DeflateRawEncoder, DeflateRawDecoder),
}


def make_encoder(name: str) -> SegmentEncoder:
    try:
        return CODECS[name][0]()
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; known: {sorted(CODECS)}") from None


def make_decoder(name: str) -> SegmentDecoder:
    try:
        return CODECS[name][1]()
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; known: {sorted(CODECS)}") from None
