"""CrashBudget: how many browser and page crashes a session recovers from.

A sliding window, not a lifetime count: a session that runs for days may see a crash now
and then and must never fail for it; one whose page crashes again as soon as it is
reopened (a page that takes its renderer down) must stop trying. More than
RRSTREAM_MAX_BROWSER_CRASHES within RRSTREAM_CRASH_WINDOW_S and the session fails.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable


class CrashKind(enum.StrEnum):
    BROWSER = "browser"  # the Chromium the session uses died (its process, or its host)
    PAGE = "page"  # the session's renderer died; the browser lives on


class CrashBudget:
    def __init__(self, limit: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._recent: deque[tuple[float, CrashKind]] = deque()
        self.counts = {kind: 0 for kind in CrashKind}

    def crashed(self, kind: CrashKind) -> str | None:
        """Counts a crash; returns why to give up when it is one too many, else None."""
        now = self._clock()
        self.counts[kind] += 1
        self._recent.append((now, kind))
        while self._recent and self._recent[0][0] <= now - self._window_s:
            self._recent.popleft()
        if len(self._recent) <= self._limit:
            return None
        what = "page" if all(k is CrashKind.PAGE for _, k in self._recent) else "browser"
        return f"the {what} crashed {len(self._recent)} times within {self._window_s:g} s"


__all__ = ["CrashBudget", "CrashKind"]
