"""CanvasMeter: how many bytes of canvas pictures a session's page sends, in all and a
second, for its status (the recorder marks each batch's share, frontend/src/recorder.js).

Plain and clock-injected (tests/unit/test_canvas_meter.py).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 10.0  # bytes a second are measured over this long


class CanvasMeter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._recent: deque[tuple[float, int]] = deque()
        self.total = 0

    def add(self, nbytes: int) -> None:
        if nbytes <= 0:
            return
        self.total += nbytes
        self._recent.append((self._clock(), nbytes))
        self._forget()

    def per_s(self) -> float:
        """Bytes a second over the last WINDOW_S."""
        self._forget()
        return round(sum(n for _, n in self._recent) / WINDOW_S, 1)

    def _forget(self) -> None:
        horizon = self._clock() - WINDOW_S
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()


__all__ = ["WINDOW_S", "CanvasMeter"]
