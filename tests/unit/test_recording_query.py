"""The filters and pages of GET /recordings (serve/recording_query.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from starlette.exceptions import HTTPException

from pipeline.models import RecordingInfo
from serve.recording_query import RecordingQuery


def info(recording_id: str, created_at: float, **fields: object) -> RecordingInfo:
    return RecordingInfo(id=recording_id, codec="deflate-raw", created_at=created_at,
                         **fields)  # type: ignore[arg-type]


RECORDINGS = [
    info("a", 100, name="Checkout flow", urls=["http://shop.test/cart"]),
    info("b", 200, name="login", urls=["http://shop.test/login"], errors=1),
    info("c", 300, name="search", urls=["http://search.test/?q=x"]),
    info("d", 300, name="checkout again", urls=["http://shop.test/cart"], errors=2),
]


def ids(query: RecordingQuery) -> list[str]:
    return [r.id for r in query.page(RECORDINGS).items]


def test_newest_first_then_by_id() -> None:
    assert ids(RecordingQuery()) == ["d", "c", "b", "a"]


def test_pages_follow_the_cursor_to_the_end() -> None:
    seen, cursor = [], None
    while True:
        page = RecordingQuery(limit=3, cursor=cursor).page(RECORDINGS)
        seen.append([r.id for r in page.items])
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [["d", "c", "b"], ["a"]]


def test_a_page_is_stable_while_new_recordings_arrive() -> None:
    first = RecordingQuery(limit=2).page(RECORDINGS)
    newer = [info("z", 999), *RECORDINGS]
    assert [r.id for r in RecordingQuery(limit=2, cursor=first.next_cursor).page(newer).items] \
        == ["b", "a"]


def test_filters() -> None:
    assert ids(RecordingQuery(name="CHECKOUT")) == ["d", "a"]
    assert ids(RecordingQuery(url="shop.test/cart")) == ["d", "a"]
    assert ids(RecordingQuery(has_errors=True)) == ["d", "b"]
    assert ids(RecordingQuery(has_errors=False)) == ["c", "a"]
    since = datetime.fromtimestamp(200, UTC)
    until = datetime.fromtimestamp(300, UTC)
    assert ids(RecordingQuery(since=since, until=until)) == ["b"]
    assert ids(RecordingQuery(name="checkout", has_errors=True, limit=1)) == ["d"]


def test_a_cursor_we_did_not_make_is_a_clear_422() -> None:
    for cursor in ("not base64!", "bm9jb2xvbg==", ""):
        with pytest.raises(HTTPException) as refused:
            RecordingQuery(cursor=cursor).page(RECORDINGS)
        assert refused.value.status_code == 422
        assert "next_cursor" in refused.value.detail
