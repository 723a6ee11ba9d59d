from __future__ import annotations

import pytest

from pipeline.protocol import (
    CLIENT_MESSAGE,
    Chunk,
    PageBatch,
    decode_frame,
    encode_frame,
    mark_reset,
)


def chunk(seq: int, start: bool = False, payload: bytes = b"x") -> Chunk:
    return Chunk(seq, start, 2, 1000.0 + seq, 1001.5 + seq, 2000.0 + seq, payload)


def test_frame_round_trip_keeps_every_header_field() -> None:
    frame = encode_frame("abc123", [chunk(7, True, b"one"), chunk(8, False, b"two")], reset=True)
    header, payload = decode_frame(frame)
    assert payload == b"onetwo"
    assert (header.first_seq, header.last_seq, header.event_count) == (7, 8, 4)
    assert (header.first_ts, header.last_ts, header.ingest_ts) == (1007.0, 1009.5, 2008.0)
    assert header.session_id == "abc123"
    assert header.segment_start and header.reset
    assert header.header_length == 49 + len("abc123")


def test_mark_reset_equals_encoding_with_reset() -> None:
    chunks = [chunk(7, True, b"one"), chunk(8, False, b"two")]
    assert mark_reset(encode_frame("abc", chunks)) == encode_frame("abc", chunks, reset=True)
    with pytest.raises(ValueError, match="must start a segment"):
        mark_reset(encode_frame("abc", [chunk(9)]))


def test_frame_without_checkout_has_no_flags() -> None:
    header, _ = decode_frame(encode_frame("s", [chunk(3)]))
    assert not header.segment_start and not header.reset


@pytest.mark.parametrize(
    ("chunks", "reset", "message"),
    [
        ([], False, "at least one"),
        ([chunk(1, True), chunk(2, True)], False, "span two segments"),
        ([chunk(1, True), chunk(3)], False, "consecutive"),
        ([chunk(4)], True, "must start a segment"),
    ],
)
def test_bad_frames_are_refused(chunks: list[Chunk], reset: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_frame("s", chunks, reset=reset)


def test_decode_rejects_short_and_foreign_frames() -> None:
    with pytest.raises(ValueError, match="too short"):
        decode_frame(b"\x01\x00")
    frame = bytearray(encode_frame("s", [chunk(1, True)]))
    frame[0] = 9
    with pytest.raises(ValueError, match="version 9"):
        decode_frame(bytes(frame))


def test_page_batch_parse_leaves_the_json_alone() -> None:
    batch = PageBatch.parse('1|2|1700.5|1701|0||[{"type":4,"data":{"href":"a|b"}},{"type":2}]')
    assert batch.checkout and batch.event_count == 2 and batch.picture_of is None
    assert (batch.first_ts, batch.last_ts, batch.canvas_chars) == (1700.5, 1701.0, 0)
    assert batch.text == '[{"type":4,"data":{"href":"a|b"}},{"type":2}]'
    canvas = '{"type":3,"data":{"source":9,"id":5}}'
    batch = PageBatch.parse(f"0|1|2|2|{len(canvas)}|5|[{canvas}]")
    assert not batch.checkout and batch.canvas_chars == len(canvas) and batch.text == f"[{canvas}]"
    assert batch.picture_of == 5


def test_a_skipped_frame_has_sequence_numbers_and_no_payload() -> None:
    pictures = [Chunk(s, False, 1, 10.0 + s, 11.0 + s, 20.0 + s, b"webp", picture_of=4)
                for s in (5, 6)]
    header, payload = decode_frame(encode_frame("s", pictures, skipped=True))
    assert header.skipped and not header.segment_start and not header.reset
    assert (header.first_seq, header.last_seq, header.event_count, payload) == (5, 6, 0, b"")
    assert not decode_frame(encode_frame("s", pictures))[0].skipped
    with pytest.raises(ValueError, match="only canvas pictures"):
        encode_frame("s", [*pictures, chunk(7)], skipped=True)


def test_page_batch_parse_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        PageBatch.parse("not a batch")


def test_hello_validation() -> None:
    hello = CLIENT_MESSAGE.validate_json('{"type":"hello","protocol":1,"resume_after":41}')
    assert hello.resume_after == 41
    for bad in ('{"type":"hello"}', '{"type":"bye","protocol":1}', "[]",
                '{"type":"hello","protocol":1,"resume_after":-1}'):
        with pytest.raises(ValueError):
            CLIENT_MESSAGE.validate_json(bad)
