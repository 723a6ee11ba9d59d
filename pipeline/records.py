"""RecordBook: the registry's session records, written where they outlive the registry.

Every change to a record marks it; the marked ones are written together, at most
`SAVE_EVERY_S` after the change (a registry Ray restarts reads them back and adopts the
sessions they describe). A store that does not answer (the GCS restarting) keeps them
marked for the next round. Only the newest `KEEP_ENDED` ended sessions are kept.
"""

from __future__ import annotations

import logging
from typing import Protocol

from pipeline.errors import describe_error
from pipeline.models import SessionRecord

_log = logging.getLogger(__name__)
SAVE_EVERY_S = 0.2
KEEP_ENDED = 1_000


class RecordStore(Protocol):
    """Where session records outlive the registry (the GCS's key-value store in production:
    pipeline/cluster.py, kv_record_store)."""

    async def load(self) -> list[SessionRecord]: ...

    async def save(self, records: list[SessionRecord]) -> None: ...

    async def delete(self, session_ids: list[str]) -> None: ...


class RecordBook:
    def __init__(self, store: RecordStore, keep_ended: int = KEEP_ENDED) -> None:
        self._store = store
        self._keep_ended = keep_ended
        self._changed: dict[str, SessionRecord] = {}

    async def load(self) -> list[SessionRecord]:
        return await self._store.load()

    def changed(self, record: SessionRecord) -> None:
        """The record changed: it is written in the next round."""
        self._changed[record.id] = record

    async def flush(self) -> None:
        """Writes every changed record now."""
        if not self._changed:
            return
        changed, self._changed = self._changed, {}
        try:
            await self._store.save(list(changed.values()))
        except Exception as exc:  # the GCS is restarting: keep them for the next round
            self._changed = {**changed, **self._changed}
            _log.warning("session records not saved yet: %s", describe_error(exc))

    async def forget_oldest(self, ended: list[SessionRecord]) -> list[str]:
        """Of these ended sessions (no longer supervised), deletes the oldest beyond
        `keep_ended` from the store; returns their ids, for the registry to forget too."""
        if len(ended) <= self._keep_ended:
            return []
        ended = sorted(ended, key=lambda r: r.ended_at or 0.0)
        gone = [r.id for r in ended[:len(ended) - self._keep_ended]]
        try:
            await self._store.delete(gone)
        except Exception as exc:
            _log.warning("old session records not deleted yet: %s", describe_error(exc))
            return []
        for session_id in gone:
            self._changed.pop(session_id, None)
        return gone


__all__ = ["KEEP_ENDED", "SAVE_EVERY_S", "RecordBook", "RecordStore"]
