"""RecordingQuery: the filters and the page of `GET /recordings`.

Newest first; the cursor names the last recording of the page before (its creation
time and id, which order recordings the same way on every replica), so a page is stable
while new recordings arrive. Plain Python over RecordingInfo (tests/unit/test_recording_query.py).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from starlette.exceptions import HTTPException

from pipeline.models import RecordingInfo, RecordingPage

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def _order(info: RecordingInfo) -> tuple[float, str]:
    return (info.created_at, info.id)


def encode_cursor(info: RecordingInfo) -> str:
    return base64.urlsafe_b64encode(f"{info.created_at!r}:{info.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created_at, recording_id = base64.urlsafe_b64decode(cursor.encode()).decode() \
            .split(":", 1)
        return float(created_at), recording_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise HTTPException(422, "cursor is not one this API returned (pass next_cursor "
                            "as it came)") from None


@dataclass(frozen=True, slots=True)
class RecordingQuery:
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    name: str | None = None  # part of the session's name, any case
    url: str | None = None  # part of a visited URL
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    has_errors: bool | None = None

    def matches(self, info: RecordingInfo) -> bool:
        if self.name is not None and self.name.lower() not in (info.name or "").lower():
            return False
        if self.url is not None and not any(self.url in u for u in info.urls):
            return False
        if self.since is not None and info.created_at < self.since.timestamp():
            return False
        if self.until is not None and info.created_at >= self.until.timestamp():
            return False
        return self.has_errors is None or info.has_errors == self.has_errors

    def page(self, recordings: list[RecordingInfo]) -> RecordingPage:
        """The page of `recordings` (any order) this query asks for."""
        after = decode_cursor(self.cursor) if self.cursor is not None else None
        found = sorted((r for r in recordings if self.matches(r)
                        and (after is None or _order(r) < after)), key=_order, reverse=True)
        items = found[:self.limit]
        more = len(found) > self.limit
        return RecordingPage(items=items, next_cursor=encode_cursor(items[-1]) if more else None)


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "RecordingQuery", "decode_cursor", "encode_cursor"]
