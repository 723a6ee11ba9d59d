"""RecordingIndex: what can be searched in a recording, gathered while it is recorded.

Three kinds of moments, each with the page time it first happened at:
- `url`: a page the session visited (each checkout's Meta event);
- `click`: an element clicked, by its CSS selector and its text (the recorder's
  `rrstream.click` custom event, frontend/src/recorder.js, which leaves out blocked and
  masked parts of the page);
- `text`: text that appeared in the page (text nodes of snapshots and mutations, changed
  texts, typed input), as rrweb recorded it: masked text and inputs are already
  asterisks there (left out), blocked elements are not in the events at all.

Each batch is scanned as text for these few shapes (never parsed whole), and the index
is written with each chunk as `<id>/index.json` (pipeline/recording_store.py), so a
search reads indexes made while recording and never rescans a recording's events.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

import orjson
from pydantic import BaseModel, Field

Kind = Literal["url", "click", "text"]
MAX_TEXT = 200  # characters of one text kept
MAX_ENTRIES = 20_000  # per recording: a page that keeps writing new text stops adding here
# The scan runs on the streamer's loop: a batch gives at most this many texts, and a batch
# over TEXT_SCAN_CHARS (a huge page's snapshot: 30 MB, 200,000 text nodes) none, so a
# hostile page cannot make indexing hold up every stream of its node.
MAX_TEXTS_PER_BATCH = 200
TEXT_SCAN_CHARS = 1 << 20
_STRING = r'("(?:[^"\\]|\\.)*")'
_TEXT_NODE = re.compile(r'"textContent":' + _STRING)
_TEXT_CHANGE = re.compile(r'"texts":\[(.*?)\](?=,"(?:attributes|removes|adds)"|\})')
_VALUE = re.compile(r'"value":' + _STRING)
_INPUT = re.compile(r'"source":5,"text":' + _STRING)
_CLICK = re.compile(r'"tag":"rrstream\.click","payload":\{"selector":' + _STRING
                    + r',"text":' + _STRING)
_HREF = re.compile(r'"type":4,"data":\{"href":' + _STRING)
_TIMESTAMP_KEY = '"timestamp":'
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


class IndexEntry(BaseModel):
    kind: Kind
    value: str
    text: str = Field(default="", description="A click's element text.")
    ts: float = Field(description="Page time it first happened at (ms since the epoch).")


class Moment(NamedTuple):
    """An IndexEntry as it is found while recording: a plain tuple, cheap to make on the
    streamer's loop (pydantic models are made only where an index is read back)."""

    kind: Kind
    value: str
    text: str
    ts: float

    def json(self) -> bytes:
        """The entry as IndexEntry's JSON."""
        return orjson.dumps({"kind": self.kind, "value": self.value, "text": self.text,
                             "ts": self.ts})


class IndexDocument(BaseModel):
    """`<id>/index.json`."""

    id: str
    chunks: int = 0
    first_ts: float | None = Field(default=None, description="The recording's first event.")
    entries: list[IndexEntry] = Field(default_factory=list)


def _string(literal: str) -> str | None:
    """A JSON string literal's text, its whitespace as a reader sees it; None for nothing
    or masked text. Only a literal with an escape goes through the JSON parser."""
    if "\\" in literal:
        try:
            value = json.loads(literal)
        except ValueError:
            return None
        if not isinstance(value, str):
            return None
    else:
        value = literal[1:-1]
    value = " ".join(value.split())
    if not value.strip("* "):  # nothing, or masked
        return None
    return value[:MAX_TEXT]


def _at(text: str, position: int, fallback: float) -> float:
    """The timestamp of the event a match at `position` is in: rrweb writes an event's
    `timestamp` after its data, so the first one after the match."""
    found = text.find(_TIMESTAMP_KEY, position)
    if found < 0:
        return fallback
    number = _NUMBER.match(text, found + len(_TIMESTAMP_KEY))
    return float(number.group()) if number else fallback


def scan(text: str, fallback_ts: float) -> Iterator[Moment]:
    """The moments in one batch's JSON text (an array of rrweb events). Each kind is
    looked for only where its key occurs at all (a plain substring test), so a batch of
    other events costs a few `in` tests."""

    def at(position: int) -> float:
        return _at(text, position, fallback_ts)

    if '"type":4' in text:
        for match in _HREF.finditer(text):
            url = _string(match.group(1))
            if url is not None:
                yield Moment("url", url, "", at(match.start()))
    if "rrstream.click" in text:
        for match in _CLICK.finditer(text):
            selector = _string(match.group(1))
            if selector is not None:
                yield Moment("click", selector, _string(match.group(2)) or "",
                             at(match.start()))
    if len(text) > TEXT_SCAN_CHARS:
        return
    texts = 0
    if '"textContent"' in text:
        for match in _TEXT_NODE.finditer(text):
            if texts >= MAX_TEXTS_PER_BATCH:
                return
            if text.startswith(',"isStyle":true', match.end()):
                continue  # a stylesheet's text, not the page's words
            value = _string(match.group(1))
            if value is not None:
                texts += 1
                yield Moment("text", value, "", at(match.start()))
    if '"texts":[{' in text:
        for change in _TEXT_CHANGE.finditer(text):
            for match in _VALUE.finditer(change.group(1)):
                if texts >= MAX_TEXTS_PER_BATCH:
                    return
                value = _string(match.group(1))
                if value is not None:
                    texts += 1
                    yield Moment("text", value, "", at(change.start()))
    if '"source":5,"text"' in text:
        for match in _INPUT.finditer(text):
            if texts >= MAX_TEXTS_PER_BATCH:
                return
            value = _string(match.group(1))
            if value is not None:
                texts += 1
                yield Moment("text", value, "", at(match.start()))


@dataclass(slots=True, frozen=True)
class IndexUpdate:
    """A store's indexes: every version, and the documents that changed since the asker's."""

    versions: dict[str, str]
    changed: dict[str, IndexDocument]

    def merged(self, other: IndexUpdate) -> IndexUpdate:
        return IndexUpdate({**self.versions, **other.versions},
                           {**self.changed, **other.changed})


class RecordingIndex:
    """One recording's index as it grows: each (kind, value, text) once, at its first time.
    Each entry's JSON is made once, when it is found, so writing the index with a chunk
    (on an I/O thread, beside the streams) only joins bytes."""

    def __init__(self, recording_id: str, earlier: IndexDocument | None = None) -> None:
        self.recording_id = recording_id
        self.entries: list[Moment] = [Moment(e.kind, e.value, e.text, e.ts)
                                      for e in (earlier.entries if earlier else [])]
        self._seen = {(e.kind, e.value, e.text) for e in self.entries}
        self._json = [entry.json() for entry in self.entries]

    def __len__(self) -> int:
        return len(self._json)

    def add(self, text: str, fallback_ts: float) -> None:
        if len(self.entries) >= MAX_ENTRIES:
            return
        for entry in scan(text, fallback_ts):
            key = (entry.kind, entry.value, entry.text)
            if key not in self._seen:
                self._seen.add(key)
                self.entries.append(entry)
                self._json.append(entry.json())
                if len(self.entries) >= MAX_ENTRIES:
                    return

    def document_json(self, chunks: int, first_ts: float | None,
                      count: int | None = None) -> bytes:
        """`<id>/index.json` (IndexDocument) with the first `count` entries (all)."""
        head = orjson.dumps({"id": self.recording_id, "chunks": chunks, "first_ts": first_ts})
        entries = self._json[:count] if count is not None else self._json
        return head[:-1] + b',"entries":[' + b",".join(entries) + b"]}"


__all__ = ["MAX_ENTRIES", "IndexDocument", "IndexEntry", "IndexUpdate", "Kind", "Moment",
           "RecordingIndex", "scan"]
