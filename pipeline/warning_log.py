"""WarningLog: a session's warnings, bounded, with repeats counted in one entry.

An alert loop opens thousands of dialogs a second and a popup storm as many windows;
listing each would push every other warning out (the log keeps the last 50) and grow the
status a viewer polls. A warning given a `key` instead updates the entry held under that
key (its count, time and message) while the log still holds it, so a storm is one line.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from pipeline.models import SessionWarning, WarningKind

_MAX_WARNINGS = 50


class WarningLog:
    def __init__(self, limit: int = _MAX_WARNINGS,
                 clock: Callable[[], float] = time.time) -> None:
        self._entries: collections.deque[SessionWarning] = collections.deque(maxlen=limit)
        self._keyed: dict[str, SessionWarning] = {}
        self._clock = clock

    def add(self, kind: WarningKind, message: str, url: str | None = None, *,
            key: str | None = None, count: int = 1) -> SessionWarning:
        """Adds a warning; with `key`, one already held under it counts `count` more and
        takes `message` and `url` instead."""
        now = self._clock()
        held = self._keyed.get(key) if key is not None else None
        if held is not None and any(entry is held for entry in self._entries):
            held.count += count
            held.at, held.message, held.url = now, message, url
            return held
        warning = SessionWarning(at=now, kind=kind, message=message, url=url, count=count)
        self._entries.append(warning)
        if key is not None:
            self._keyed[key] = warning
        return warning

    def list(self) -> list[SessionWarning]:
        """Copies, oldest first."""
        return [entry.model_copy() for entry in self._entries]


__all__ = ["WarningLog"]
