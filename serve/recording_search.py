"""RecordingSearch: moments across recordings where a text appeared, a URL was visited or
an element was clicked, from the indexes made while recording (pipeline/recording_index.py).

Each gateway replica keeps the indexes it has read, by version: a search asks the store
(or, with local stores, every node's streamer through the registry) for the current
versions in one listing and reads only the indexes that changed since, so a search over a
thousand finished recordings reads nothing but that listing. Matching is plain Python: a
recording is looked into entry by entry only when its lowercased values hold the words
(`Searchable`; tests/unit/test_recording_search.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel, Field

from pipeline.recording_index import IndexDocument, IndexEntry, IndexUpdate, Kind

DEFAULT_HITS = 100
MAX_HITS = 1_000


class SearchHit(BaseModel):
    recording_id: str
    kind: Kind = Field(description="`text` appeared, `url` visited, or `click` on an element.")
    value: str = Field(description="The text, the URL, or the clicked element's selector.")
    text: str = Field(default="", description="A clicked element's text.")
    ts: float = Field(description="Page time (ms since the epoch).")
    offset_ms: float = Field(description="From the recording's first event: where the "
                             "player seeks to.")


class SearchResult(BaseModel):
    hits: list[SearchHit]
    truncated: bool = Field(description="More matched than `limit`.")


@dataclass(frozen=True, slots=True)
class Searchable:
    """One recording's index as a search reads it: beside its entries, the values of each
    kind lowercased in one string, so a recording without the words is passed over with
    one substring test (most are, in a search over a thousand) rather than an entry at a
    time. Made once per version of the index."""

    document: IndexDocument
    texts: str
    urls: str
    clicks: str

    @classmethod
    def of(cls, document: IndexDocument) -> Searchable:
        def joined(kind: Kind, *, lower: bool = True) -> str:
            values = [f"{e.value}\n{e.text}" if kind == "click" else e.value
                      for e in document.entries if e.kind == kind]
            text = "\n".join(values)
            return text.lower() if lower else text

        return cls(document, joined("text"), joined("url", lower=False), joined("click"))


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str | None = None  # part of a text that appeared (any case)
    url: str | None = None  # part of a visited URL
    click: str | None = None  # part of a clicked element's selector or text (any case)
    limit: int = DEFAULT_HITS

    def matches(self, entry: IndexEntry) -> bool:
        if entry.kind == "text":
            return self.text is not None and self.text.lower() in entry.value.lower()
        if entry.kind == "url":
            return self.url is not None and self.url in entry.value
        if self.click is None:
            return False
        needle = self.click.lower()
        return needle in entry.value.lower() or needle in entry.text.lower()

    def may_match(self, index: Searchable) -> bool:
        """False when no entry of the recording can match (one substring test a kind)."""
        return ((self.text is not None and self.text.lower() in index.texts)
                or (self.url is not None and self.url in index.urls)
                or (self.click is not None and self.click.lower() in index.clicks))

    def run(self, indexes: list[Searchable]) -> SearchResult:
        """Hits in the newest recordings first (by their first event), each in time order."""
        hits: list[SearchHit] = []
        ordered = sorted(indexes, key=lambda i: (i.document.first_ts or 0.0, i.document.id),
                         reverse=True)
        for index in ordered:
            if not self.may_match(index):
                continue
            document = index.document
            start = document.first_ts
            for entry in sorted((e for e in document.entries if self.matches(e)),
                                key=lambda e: e.ts):
                if len(hits) == self.limit:
                    return SearchResult(hits=hits, truncated=True)
                hits.append(SearchHit(recording_id=document.id, kind=entry.kind,
                                      value=entry.value, text=entry.text, ts=entry.ts,
                                      offset_ms=max(0.0, entry.ts - (start or entry.ts))))
        return SearchResult(hits=hits, truncated=False)


class RecordingSearch:
    def __init__(self, updates: Callable[[dict[str, str]], Awaitable[IndexUpdate]]) -> None:
        """`updates(known)`: the current index versions and what changed since `known`."""
        self._updates = updates
        self._versions: dict[str, str] = {}
        self._indexes: dict[str, Searchable] = {}
        self._refreshing = asyncio.Lock()

    async def search(self, query: SearchQuery, recording_id: str | None = None) -> SearchResult:
        await self._refresh()
        if recording_id is not None:
            index = self._indexes.get(recording_id)
            return query.run([index] if index is not None else [])
        return query.run(list(self._indexes.values()))

    async def _refresh(self) -> None:
        async with self._refreshing:  # one listing at a time; the cache is shared
            update = await self._updates(dict(self._versions))
            changed = {rid: Searchable.of(document) for rid, document in update.changed.items()}
            self._indexes = {rid: changed.get(rid) or self._indexes[rid]
                             for rid in update.versions
                             if rid in changed or rid in self._indexes}
            self._versions = {rid: update.versions[rid] for rid in self._indexes}


__all__ = ["DEFAULT_HITS", "MAX_HITS", "RecordingSearch", "SearchHit", "SearchQuery",
           "SearchResult", "Searchable"]
