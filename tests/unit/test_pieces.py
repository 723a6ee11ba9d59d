"""Pieces: a page's messages in pieces are joined per document, whole ones pass through;
a paused page's notice is told apart from its batches."""

from __future__ import annotations

from pipeline.protocol import PageBatch
from pipeline.recorder import BINDING_NAME, PageRecorder, Pieces, StillOver


def test_pieces_are_joined_and_whole_messages_pass() -> None:
    pieces = Pieces()
    assert pieces.add(1, "0|1|1|1|[{}]") == "0|1|1|1|[{}]"
    assert pieces.add(1, "~1|1|1|1|[{\"a\":") is None
    assert pieces.add(2, "0|1|2|2|[]") == "0|1|2|2|[]", "another document is not held up"
    assert pieces.add(1, "~\"xy") is None
    assert pieces.add(1, "$z\"}]") == "1|1|1|1|[{\"a\":\"xyz\"}]"
    assert pieces.add(1, "0|1|3|3|[]") == "0|1|3|3|[]"


def test_an_unfinished_message_is_dropped_not_glued_to_the_next() -> None:
    pieces = Pieces()
    assert pieces.add(1, "~1|1|1|1|[{\"lost") is None
    assert pieces.add(1, "0|1|2|2|[]") == "0|1|2|2|[]"
    assert pieces.add(1, "$tail]") == "tail]", "a last piece alone is only itself"


def test_pieces_beyond_the_limit_are_dropped_until_their_last() -> None:
    pieces = Pieces(limit=10)
    assert pieces.add(1, "~123456") is None
    assert pieces.add(1, "~789012") is None  # over 10: dropped
    assert pieces.add(1, "~345") is None
    assert pieces.add(1, "$end") is None, "the rest of the dropped message is not a message"
    assert pieces.add(1, "~0|1|") is None
    assert pieces.add(1, "$1|1|[]") == "0|1|1|1|[]", "the next one is read again"


def test_a_paused_pages_notice_is_told_not_taken_for_a_batch() -> None:
    batches: list[PageBatch] = []
    notices: list[StillOver] = []
    recorder = PageRecorder("", batches.append, notices.append)
    recorder._binding_called({"name": BINDING_NAME, "executionContextId": 1,
                              "payload": "!61|6100000|1796300000500"})
    recorder._binding_called({"name": BINDING_NAME, "executionContextId": 1,
                              "payload": "0|1|1|1|0||[{}]"})
    recorder._binding_called({"name": BINDING_NAME, "executionContextId": 1,
                              "payload": "!not a notice"})
    assert notices == [StillOver(61.0, 6_100_000.0, 1_796_300_000.5)]
    assert [b.event_count for b in batches] == [1]
