from __future__ import annotations

import pytest

from pipeline.buffer import StreamBuffer
from pipeline.protocol import Chunk


def filled(starts: set[int], last: int, max_bytes: int = 10_000, max_segments: int = 8,
           size: int = 10) -> StreamBuffer:
    buffer = StreamBuffer(max_bytes, max_segments)
    for seq in range(1, last + 1):
        buffer.append(Chunk(seq, seq in starts, 1, 0.0, 0.0, 0.0, b"x" * size))
    return buffer


def seqs(chunks: list[Chunk]) -> list[int]:
    return [c.seq for c in chunks]


def test_fresh_join_gets_the_current_segment() -> None:
    catchup = filled({1, 5, 9}, 12).after(None)
    assert catchup.reset and seqs(catchup.chunks) == [9, 10, 11, 12]


def test_resume_gets_exactly_the_missing_chunks_across_segments() -> None:
    buffer = filled({1, 5, 9}, 12)
    catchup = buffer.after(3)
    assert not catchup.reset and seqs(catchup.chunks) == list(range(4, 13))
    assert seqs(buffer.after(11).chunks) == [12]
    assert buffer.after(12).chunks == [] and not buffer.after(12).reset


def test_resume_from_before_the_buffer_resets_to_the_latest_checkout() -> None:
    buffer = filled({1, 5, 9}, 12, max_segments=2)
    assert buffer.first_seq == 5
    catchup = buffer.after(2)
    assert catchup.reset and seqs(catchup.chunks) == [9, 10, 11, 12]
    # The last chunk before the buffer is still a clean continuation.
    assert seqs(buffer.after(4).chunks) == list(range(5, 13))


def test_resume_from_the_future_resets() -> None:
    assert filled({1}, 3).after(99).reset


def test_byte_cap_drops_old_segments_but_never_the_current_one() -> None:
    buffer = filled({1, 5, 9}, 12, max_bytes=45)
    assert buffer.first_seq == 9 and buffer.nbytes == 40
    huge = filled({1}, 20, max_bytes=10)
    assert len(huge) == 20 and huge.segment_count == 1


def test_chunks_must_be_consecutive() -> None:
    buffer = filled({1}, 2)
    with pytest.raises(ValueError, match="does not follow"):
        buffer.append(Chunk(4, False, 1, 0.0, 0.0, 0.0, b""))


def test_empty_buffer() -> None:
    buffer = StreamBuffer(100, 2)
    assert buffer.after(None).chunks == [] and buffer.after(5).reset
    assert buffer.last_seq is None
