"""Retention: old recordings are deleted, oldest first, so the store does not grow forever.

RRSTREAM_RETENTION_MAX_AGE_S deletes recordings created longer ago than that;
RRSTREAM_RETENTION_MAX_BYTES deletes the oldest while the whole store holds more (its
chunks, metadata, exports and assets all count, and all go with the recording). A
recording still being written is never deleted (it counts toward the bytes); one whose
writer vanished without finishing it (its node died) counts as finished an hour after
its newest event.

Who runs it: each node's Streamer over a local store (its own), the registry over a
shared one (S3), on a thread of their own every RRSTREAM_RETENTION_EVERY_S. The
deciding (`expired`) is plain and tested without a store (tests/unit/test_retention.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pipeline.config import Settings
from pipeline.errors import RecordingNotFound, describe_error
from pipeline.models import RecordingInfo

ABANDONED_S = 3600.0
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stored:
    """One recording, as retention sees it."""

    id: str
    created_at: float
    finished: bool
    nbytes: int


def expired(stored: list[Stored], now: float, max_age_s: float, max_bytes: int) -> list[str]:
    """The recordings to delete, oldest first: finished ones past `max_age_s`, then the
    oldest finished ones while the store holds more than `max_bytes` (0: no limit)."""
    total = sum(s.nbytes for s in stored)
    doomed = []
    for recording in sorted(stored, key=lambda s: (s.created_at, s.id)):
        if not recording.finished:
            continue
        too_old = max_age_s > 0 and now - recording.created_at > max_age_s
        too_big = max_bytes > 0 and total > max_bytes
        if too_old or too_big:
            doomed.append(recording.id)
            total -= recording.nbytes
    return doomed


def stored(infos: list[RecordingInfo], sizes: dict[str, int], live: set[str],
           now: float) -> list[Stored]:
    """What retention weighs, from the store's listing and its bytes per recording."""
    found = []
    for info in infos:
        newest = (info.last_ts / 1000.0) if info.last_ts else info.created_at
        finished = info.id not in live and (info.ended_at is not None
                                            or now - newest > ABANDONED_S)
        found.append(Stored(info.id, info.created_at, finished, sizes.get(info.id, 0)))
    return found


class Store(Protocol):
    """What retention needs of a store (pipeline/recording_store.py RecordingStore)."""

    def list(self) -> list[RecordingInfo]: ...

    def usage(self) -> dict[str, int]: ...

    def delete(self, recording_id: str) -> None: ...


class Retention:
    def __init__(self, store: Store, live: Callable[[], set[str]], max_age_s: float,
                 max_bytes: int, every_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._live = live
        self._max_age_s = max_age_s
        self._max_bytes = max_bytes
        self._every_s = every_s
        self._clock = clock
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings, store: Store,
                      live: Callable[[], set[str]]) -> Retention | None:
        """None when neither limit is set."""
        if not settings.retention_max_age_s and not settings.retention_max_bytes:
            return None
        return cls(store, live, settings.retention_max_age_s, settings.retention_max_bytes,
                   settings.retention_every_s)

    def run_once(self) -> list[str]:
        """Deletes what is past the limits now; returns the ids deleted."""
        now = self._clock()
        doomed = expired(stored(self._store.list(), self._store.usage(), self._live(), now),
                         now, self._max_age_s, self._max_bytes)
        deleted = []
        for recording_id in doomed:
            try:
                self._store.delete(recording_id)
            except RecordingNotFound:
                pass  # deleted meanwhile (by hand, or by another node's retention)
            deleted.append(recording_id)
        if deleted:
            _log.info("retention deleted %d recording(s): %s", len(deleted), ", ".join(deleted))
        return deleted

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        while not self._stopping.wait(self._every_s):
            try:
                self.run_once()
            except Exception as exc:  # the store did not answer: the next round tries again
                _log.warning("retention skipped a round: %s", describe_error(exc))


__all__ = ["ABANDONED_S", "Retention", "Stored", "expired", "stored"]
