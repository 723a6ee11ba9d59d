"""Writes the viewer's decoder fixtures: binary frames plus what they decode to.

Run with the project's virtualenv (the script puts the repository root on sys.path):

    .venv/bin/python frontend/test/make_fixtures.py

The frames come from the real encoders (`pipeline.codec.Lz4FrameEncoder` into
fixtures/, `DeflateRawEncoder` into fixtures/deflate-raw/) and framing
(`pipeline.protocol.encode_frame`), so the node tests check the viewer against
the Python side byte for byte. Both codecs encode the same batches, framed the
same way, and share fixtures/decoded.txt.gz. Two segments: the first starts
with a checkout larger than 64 KiB (several linked blocks, one UTF-8 character
split across a block boundary), then small batches that refer back into earlier
output, one of them incompressible (a stored block), some frames with several
batches; the second segment restarts the compression context. Output is
deterministic.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import sys
import zlib
from pathlib import Path

import lz4.block

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from pipeline.codec import (
    DeflateRawDecoder,
    DeflateRawEncoder,
    Lz4FrameDecoder,
    Lz4FrameEncoder,
    SegmentDecoder,
    SegmentEncoder,
)
from pipeline.protocol import Chunk, decode_frame, encode_frame

OUT = Path(__file__).resolve().parent / "fixtures"
DEFLATE_OUT = OUT / "deflate-raw"
SKIPPED_OUT = OUT / "skipped"
SESSION_ID = "fixture-7f3a9c"
FIRST_SEQ = 2**33 + 1  # above 2**32: the viewer must read the full uint64
BLOCK = 64 * 1024
WORDS = ["live", "stream", "viewer", "checkout", "mutation", "Grüße", "café", "naïve",
         "日本語", "テスト", "données", "größe", "emoji🙂", "rrweb", "segment", "ray"]


class Page:
    """A made-up page that emits rrweb-shaped events with increasing timestamps."""

    def __init__(self, rng: random.Random, start_ts: float) -> None:
        self.rng = rng
        self.ts = start_ts
        self.next_id = 1
        self.text_ids: list[int] = []

    def tick(self, ms: float) -> float:
        self.ts += ms
        return self.ts

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def _text(self, words: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(words))

    def _item(self, i: int) -> dict:
        text_id = self._id()
        self.text_ids.append(text_id)
        return {"type": 2, "tagName": "li", "attributes": {"class": f"row r{i % 7}",
                                                          "data-i": str(i)},
                "childNodes": [{"type": 3, "textContent": self._text(6), "id": text_id}],
                "id": self._id()}

    def checkout(self, items: int, href: str) -> list[dict]:
        self.next_id = 1
        self.text_ids = []
        doc_id, doctype_id, html_id, head_id, body_id = (self._id() for _ in range(5))
        node = {"type": 0, "id": doc_id, "childNodes": [
            {"type": 1, "name": "html", "publicId": "", "systemId": "", "id": doctype_id},
            {"type": 2, "tagName": "html", "attributes": {"lang": "en"}, "id": html_id,
             "childNodes": [
                 {"type": 2, "tagName": "head", "attributes": {}, "childNodes": [], "id": head_id},
                 {"type": 2, "tagName": "body", "attributes": {}, "id": body_id,
                  "childNodes": [{"type": 2, "tagName": "ul", "attributes": {"id": "list"},
                                  "childNodes": [self._item(i) for i in range(items)],
                                  "id": self._id()}]},
             ]},
        ]}
        meta = {"type": 4, "data": {"href": href, "width": 1280, "height": 800},
                "timestamp": self.tick(3)}
        full = {"type": 2, "data": {"node": node, "initialOffset": {"left": 0, "top": 0}},
                "timestamp": self.tick(1)}
        return [meta, full]

    def incremental(self) -> dict:
        kind = self.rng.random()
        if kind < 0.5:
            data = {"source": 0, "texts": [{"id": self.rng.choice(self.text_ids),
                                            "value": self._text(4)}],
                    "attributes": [], "removes": [], "adds": []}
        elif kind < 0.8:
            data = {"source": 1, "positions": [
                {"x": self.rng.randrange(1280), "y": self.rng.randrange(800), "id": 5,
                 "timeOffset": -10 * k} for k in range(3)]}
        else:
            data = {"source": 3, "id": 1, "x": 0, "y": self.rng.randrange(2000)}
        return {"type": 3, "data": data, "timestamp": self.tick(self.rng.randrange(5, 60))}

    def blob(self) -> dict:
        """A custom event of incompressible data, alone in its batch: a stored block."""
        raw = base64.b64encode(self.rng.randbytes(9000)).decode("ascii")
        return {"type": 5, "timestamp": self.tick(7),
                "data": {"tag": "blob", "payload": {"b": raw}}}


def batch_bytes(events: list[dict]) -> bytes:
    return (json.dumps(events, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def big_checkout(page: Page, items: int) -> tuple[list[dict], bytes]:
    """A checkout whose 64 KiB block boundary falls inside a multi-byte character."""
    for pad in range(200):
        saved = (page.rng.getstate(), page.ts, page.next_id)
        events = page.checkout(items, f"https://example.test/page?pad={'x' * pad}")
        data = batch_bytes(events)
        if len(data) > BLOCK and 0x80 <= data[BLOCK] < 0xC0:
            return events, data
        page.rng.setstate(saved[0])
        page.ts, page.next_id = saved[1], saved[2]
    raise RuntimeError("no padding splits a character at the block boundary")


def block_kinds(payload: bytes, segment_start: bool, history: bytearray) -> list[tuple[bool, bool]]:
    """(stored, refers back to earlier output) for each block; `history` is the segment's output."""
    pos = 0
    if segment_start:
        history.clear()
        flg = payload[4]
        pos = 7 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0)
    kinds = []
    while pos < len(payload):
        size = int.from_bytes(payload[pos:pos + 4], "little")
        pos += 4
        stored, size = bool(size & 0x80000000), size & 0x7FFFFFFF
        block = payload[pos:pos + size]
        pos += size
        if stored:
            kinds.append((True, False))
            history += block
            continue
        data = lz4.block.decompress(block, uncompressed_size=BLOCK, dict=bytes(history[-BLOCK:]))
        try:
            alone_ok = lz4.block.decompress(block, uncompressed_size=BLOCK) == data
        except lz4.block.LZ4BlockError:
            alone_ok = False
        kinds.append((False, not alone_ok))
        history += data
    return kinds


def deflate_needs_history(payload: bytes, expected: bytes) -> bool:
    """True when the payload cannot be inflated without the segment's earlier output."""
    try:
        return zlib.decompressobj(-15).decompress(payload) != expected
    except zlib.error:
        return True


# A batch to encode: its events, their bytes, whether it starts a segment.
Batch = tuple[list[dict], bytes, bool]


def make_batches() -> list[tuple[list[Batch], bool]]:
    """The fixture stream as frames of batches, each with its RESET flag."""
    rng = random.Random(20240611)
    page = Page(rng, start_ts=1_760_000_000_000.0)

    def small_batches(count: int, blob_at: int | None = None) -> list[Batch]:
        out = []
        for i in range(count):
            if i == blob_at:
                events = [page.blob()]
            else:
                events = [page.incremental() for _ in range(rng.randrange(1, 6))]
            out.append((events, batch_bytes(events), False))
        return out

    frames: list[tuple[list[Batch], bool]] = []
    events, data = big_checkout(page, items=900)
    frames.append(([(events, data, True)], True))
    small = small_batches(31, blob_at=9)
    for size in [1, 1, 1, 3, 1, 5, 1, 1, 2, 1, 1, 4, 1, 1, 1, 1, 1, 1, 2, 1]:
        frames.append((small[:size], False))
        small = small[size:]
    assert not small
    page.tick(400)
    events = page.checkout(420, "https://example.test/second")
    data = batch_bytes(events)
    assert len(data) > BLOCK
    frames.append(([(events, data, True)], False))
    small = small_batches(8)
    for size in [1, 2, 1, 3, 1]:
        frames.append((small[:size], False))
        small = small[size:]
    assert not small and all(parts for parts, _ in frames)
    return frames


def write_codec(out: Path, frames: list[tuple[list[Batch], bool]], encoder: SegmentEncoder,
                decoder: SegmentDecoder) -> bytes:
    """Encodes and frames the batches into `out`; returns the decoded text of them all."""
    seq = FIRST_SEQ

    def chunk(events: list[dict], data: bytes, segment_start: bool) -> Chunk:
        nonlocal seq
        payload = encoder.encode(data, segment_start=segment_start)
        c = Chunk(seq=seq, segment_start=segment_start, event_count=len(events),
                  first_ts=events[0]["timestamp"], last_ts=events[-1]["timestamp"],
                  ingest_ts=events[-1]["timestamp"] + 12.625 + seq % 5, payload=payload)
        seq += 1
        return c

    out.mkdir(exist_ok=True)
    for old in out.glob("frame-*.bin"):
        old.unlink()
    lz4 = encoder.name == Lz4FrameEncoder.name
    history = bytearray()
    text = bytearray()
    manifest = []
    stats = ({"blocks": 0, "stored_blocks": 0, "blocks_needing_history": 0} if lz4
             else {"frames_needing_history": 0})
    for n, (batches, reset) in enumerate(frames):
        chunks = [chunk(*batch) for batch in batches]
        frame = encode_frame(SESSION_ID, chunks, reset=reset)
        header, payload = decode_frame(frame)
        decoded = decoder.decode(payload, segment_start=header.segment_start)
        expected = b"".join(data for _, data, _ in batches)
        assert decoded == expected, f"python round trip failed at frame {n}"
        if lz4:
            for stored, needs in block_kinds(payload, header.segment_start, history):
                stats["blocks"] += 1
                stats["stored_blocks"] += stored
                stats["blocks_needing_history"] += needs
        elif not header.segment_start:
            stats["frames_needing_history"] += deflate_needs_history(payload, expected)
        name = f"frame-{n:02d}.bin"
        (out / name).write_bytes(frame)
        manifest.append({
            "file": name, "flags": header.flags, "segment_start": header.segment_start,
            "reset": header.reset, "header_length": header.header_length,
            "event_count": header.event_count, "first_seq": header.first_seq,
            "last_seq": header.last_seq, "first_ts": header.first_ts,
            "last_ts": header.last_ts, "ingest_ts": header.ingest_ts,
            "session_id": header.session_id, "payload_length": len(payload),
            "text_offset": len(text), "text_length": len(expected), "batches": len(batches),
        })
        text += expected
    if lz4:
        assert stats["stored_blocks"] >= 1, stats
        assert stats["blocks_needing_history"] >= 10, stats
    else:
        assert stats["frames_needing_history"] >= 10, stats
    (out / "manifest.json").write_text(json.dumps(
        {"session_id": SESSION_ID, "codec": encoder.name, "stats": stats, "frames": manifest},
        indent=1) + "\n")
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"{encoder.name}: {len(manifest)} frames, {len(text)} text bytes, "
          f"{size} fixture bytes, {stats}")
    return bytes(text)


def write_skipped(out: Path) -> None:
    """A deflate-raw segment with sealed canvas pictures (pipeline/codec.py), framed as the
    gateway frames it for a viewer that fell behind: the pictures a newer one of their
    canvas superseded go as SKIPPED frames, left out of the deflate stream."""
    rng = random.Random(12)
    page = Page(rng, 1_700_000_100_000.0)
    encoder = DeflateRawEncoder()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("frame-*.bin"):
        old.unlink()
    seq = FIRST_SEQ - 1

    def chunk(events: list[dict], segment_start: bool = False,
              picture_of: int | None = None) -> tuple[Chunk, bytes]:
        nonlocal seq
        seq += 1
        data = batch_bytes(events)
        payload = encoder.encode(data, segment_start=segment_start, seal=picture_of is not None)
        ts = [e["timestamp"] for e in events]
        return Chunk(seq, segment_start, len(events), ts[0], ts[-1], ts[-1] + 3.0, payload,
                     picture_of), data

    def picture(canvas: int) -> list[dict]:
        webp = base64.b64encode(rng.randbytes(600)).decode()
        return [{"type": 3, "timestamp": page.tick(500), "data": {
            "source": 9, "id": canvas, "type": 0, "commands": [
                {"property": "clearRect", "args": [0, 0, 300, 150]},
                {"property": "drawImage", "args": [{"rr_type": "ImageBitmap", "args": [
                    {"rr_type": "Blob", "data": [{"rr_type": "ArrayBuffer", "base64": webp}],
                     "type": "image/webp"}]}, 0, 0]}]}}]

    # (chunks, skipped) per frame: canvas 7's first and second pictures are superseded by
    # its third; canvas 8's only picture goes whole.
    plan = [([chunk(page.checkout(30, "https://example.test/canvas"), True),
              chunk([page.incremental()])], False),
            ([chunk(picture(7), picture_of=7)], True),
            ([chunk([page.incremental()])], False),
            ([chunk(picture(7), picture_of=7)], True),
            ([chunk(picture(8), picture_of=8), chunk([page.incremental()])], False),
            ([chunk(picture(7), picture_of=7), chunk([page.incremental()])], False)]
    manifest = []
    for index, (chunks, skipped) in enumerate(plan):
        frame = encode_frame(SESSION_ID, [c for c, _ in chunks], reset=index == 0,
                             skipped=skipped)
        name = f"frame-{index:02d}.bin"
        (out / name).write_bytes(frame)
        header, _ = decode_frame(frame)
        manifest.append({"file": name, "first_seq": header.first_seq,
                         "last_seq": header.last_seq, "skipped": skipped,
                         "lines": [] if skipped else [d.decode() for _, d in chunks]})
    # The Python decoder agrees: what is not skipped decodes, byte for byte.
    decoder = DeflateRawDecoder()
    for index, (chunks, skipped) in enumerate(plan):
        if not skipped:
            text = decoder.decode(b"".join(c.payload for c, _ in chunks),
                                  segment_start=index == 0)
            assert text == b"".join(d for _, d in chunks)
    (out / "manifest.json").write_text(json.dumps(
        {"session_id": SESSION_ID, "codec": "deflate-raw", "frames": manifest}, indent=1) + "\n")
    print(f"skipped: {len(manifest)} frames")


def main() -> None:
    write_skipped(SKIPPED_OUT)
    frames = make_batches()
    text = write_codec(OUT, frames, Lz4FrameEncoder(), Lz4FrameDecoder())
    assert write_codec(DEFLATE_OUT, frames, DeflateRawEncoder(), DeflateRawDecoder()) == text
    (OUT / "decoded.txt.gz").write_bytes(gzip.compress(text, mtime=0))


if __name__ == "__main__":
    main()
