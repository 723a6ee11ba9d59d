"""Search (pipeline/recording_index.py, serve/recording_search.py): the index is made from
each batch's text while recording, masked content stays out, and searches read only the
indexes that changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.recording_index import IndexDocument, IndexEntry, IndexUpdate, RecordingIndex, scan
from pipeline.recording_store import RecordingStore
from serve.recording_search import RecordingSearch, Searchable, SearchQuery


def events(*items: dict) -> str:
    return json.dumps(list(items), separators=(",", ":"))


META = {"type": 4, "data": {"href": "http://shop.test/cart", "width": 800, "height": 600},
        "timestamp": 1000}
SNAPSHOT = {"type": 2, "data": {"node": {"type": 0, "childNodes": [
    {"type": 2, "tagName": "style", "childNodes": [
        {"type": 3, "textContent": "body { color: red }", "isStyle": True, "id": 3}], "id": 2},
    {"type": 3, "textContent": "Your   cart\n is empty", "id": 4},
    {"type": 3, "textContent": "*******", "id": 5}], "id": 1}}, "timestamp": 1001}
MUTATION = {"type": 3, "data": {"source": 0, "texts": [{"id": 4, "value": "Cart: 2 items"}],
                                "attributes": [], "removes": [],
                                "adds": [{"parentId": 1, "nextId": None, "node": {
                                    "type": 3, "textContent": "Item 2", "id": 9}}]},
            "timestamp": 2000}
TYPED = {"type": 3, "data": {"source": 5, "text": "blue shoes", "isChecked": False, "id": 7},
         "timestamp": 2500}
MASKED_INPUT = {"type": 3, "data": {"source": 5, "text": "********", "isChecked": False,
                                    "id": 8}, "timestamp": 2600}
CLICK = {"type": 5, "data": {"tag": "rrstream.click", "payload": {
    "selector": "#checkout", "text": "Check out now"}}, "timestamp": 3000}


def test_a_batch_is_scanned_for_urls_clicks_texts_and_typing() -> None:
    found = [(e.kind, e.value, e.text, e.ts) for e in scan(events(
        META, SNAPSHOT, MUTATION, TYPED, MASKED_INPUT, CLICK), 0.0)]
    assert found == [
        ("url", "http://shop.test/cart", "", 1000.0),
        ("click", "#checkout", "Check out now", 3000.0),
        ("text", "Your cart is empty", "", 1001.0),  # whitespace as a reader sees it
        ("text", "Item 2", "", 2000.0),
        ("text", "Cart: 2 items", "", 2000.0),
        ("text", "blue shoes", "", 2500.0),
    ]  # the stylesheet's text and the masked ones are not there


def test_each_moment_is_indexed_once_at_its_first_time() -> None:
    index = RecordingIndex("r")
    index.add(events(MUTATION), 0.0)
    index.add(events({**MUTATION, "timestamp": 9000}), 0.0)
    assert [(e.value, e.ts) for e in index.entries] == [("Item 2", 2000.0),
                                                        ("Cart: 2 items", 2000.0)]
    written = IndexDocument.model_validate_json(index.document_json(3, 1000.0))
    assert (written.chunks, written.first_ts, [e.value for e in written.entries]) == (
        3, 1000.0, ["Item 2", "Cart: 2 items"])
    again = RecordingIndex("r", written)  # a reopened writer
    again.add(events(MUTATION), 0.0)
    assert len(again.entries) == 2


def document(recording_id: str, first_ts: float, *entries: IndexEntry) -> IndexDocument:
    return IndexDocument(id=recording_id, chunks=1, first_ts=first_ts, entries=list(entries))


DOCS = {
    "old": document("old", 1000.0, IndexEntry(kind="text", value="Blue shoes", ts=1500.0),
                    IndexEntry(kind="url", value="http://shop.test/cart", ts=1000.0)),
    "new": document("new", 5000.0, IndexEntry(kind="click", value="#buy", text="Buy blue",
                                              ts=7000.0),
                    IndexEntry(kind="text", value="blue sky", ts=6000.0)),
}


INDEXES = [Searchable.of(document) for document in DOCS.values()]


def test_queries_match_their_kind_newest_recording_first() -> None:
    result = SearchQuery(text="BLUE").run(INDEXES)
    assert [(h.recording_id, h.value, h.offset_ms) for h in result.hits] == [
        ("new", "blue sky", 1000.0), ("old", "Blue shoes", 500.0)]
    assert [h.value for h in SearchQuery(url="shop.test").run(INDEXES).hits] == \
        ["http://shop.test/cart"]
    assert SearchQuery(url="SHOP.test").run(INDEXES).hits == []  # a URL's case counts
    clicks = SearchQuery(click="buy blue").run(INDEXES).hits
    assert [(h.value, h.text, h.offset_ms) for h in clicks] == [("#buy", "Buy blue", 2000.0)]
    assert SearchQuery(click="#buy").run(INDEXES).hits[0].recording_id == "new"
    limited = SearchQuery(text="blue", limit=1).run(INDEXES)
    assert len(limited.hits) == 1 and limited.truncated
    # Words that span two entries are in the joined values, but no entry holds them.
    two = Searchable.of(document("two", 1.0, IndexEntry(kind="text", value="Alpha", ts=1.0),
                                 IndexEntry(kind="text", value="Beta", ts=2.0)))
    assert "alpha\nbeta" in two.texts
    assert SearchQuery(text="alpha\nbeta").run([two]).hits == []
    assert SearchQuery(click="#buy\nbuy").run(INDEXES).hits == []


async def test_a_search_reads_only_the_indexes_that_changed() -> None:
    asked: list[dict[str, str]] = []
    versions = {"old": "v1", "new": "v1"}

    async def updates(known: dict[str, str]) -> IndexUpdate:
        asked.append(known)
        return IndexUpdate(dict(versions), {rid: DOCS[rid] for rid, v in versions.items()
                                            if known.get(rid) != v})

    search = RecordingSearch(updates)
    assert len((await search.search(SearchQuery(text="blue"))).hits) == 2
    assert len((await search.search(SearchQuery(text="blue"), "old")).hits) == 1
    assert asked[-1] == {"old": "v1", "new": "v1"}  # nothing read again
    del versions["old"]  # deleted: its hits go with it
    assert [h.recording_id for h in (await search.search(SearchQuery(text="blue"))).hits] == \
        ["new"]


def test_a_batch_gives_at_most_a_bounded_number_of_texts_and_a_huge_one_none() -> None:
    """The scan runs on the streamer's loop: a mutation flood or a huge snapshot must not
    hold it up."""
    from pipeline.recording_index import MAX_TEXTS_PER_BATCH, TEXT_SCAN_CHARS

    adds = [{"parentId": 1, "nextId": None, "node": {"type": 3, "textContent": f"m{i}",
                                                     "id": i}} for i in range(2_000)]
    flood = {"type": 3, "data": {"source": 0, "texts": [], "attributes": [], "removes": [],
                                 "adds": adds}, "timestamp": 5}
    assert len(list(scan(events(flood), 0.0))) == MAX_TEXTS_PER_BATCH
    huge = events(META, {"type": 3, "data": {"source": 0, "adds": [
        {"node": {"type": 3, "textContent": "x" * 100, "id": i}} for i in
        range(TEXT_SCAN_CHARS // 100)]}, "timestamp": 6})
    assert [e.kind for e in scan(huge, 0.0)] == ["url"]


@pytest.mark.parametrize("url", ["local", "memory"])
def test_an_index_has_a_new_version_when_rewritten_and_none_once_deleted(
        url: str, tmp_path: Path) -> None:
    store = RecordingStore(str(tmp_path) if url == "local" else f"memory://v-{tmp_path.name}")
    index = RecordingIndex("r1")
    index.add(events(MUTATION), 0.0)
    store.write_chunk("r1", 0, b"")
    store.write_index("r1", index.document_json(1, 1000.0))
    first = store.index_update({})
    assert set(first.versions) == {"r1"} and first.changed["r1"].entries[0].value == "Item 2"
    assert store.index_update(first.versions).changed == {}, "nothing read again"
    index.add(events(TYPED), 0.0)
    store.write_index("r1", index.document_json(2, 1000.0))
    second = store.index_update(first.versions)
    assert second.versions["r1"] != first.versions["r1"]
    assert [e.value for e in second.changed["r1"].entries][-1] == "blue shoes"
    store.delete("r1")
    assert store.index_update(second.versions).versions == {}
