"""IdleTimeouts: when a session nobody watches and nothing drives has waited long enough.

A session is idle once its workflow is done (state `idle`); it counts as watched while
any gateway replica reports a viewer of its stream. After RRSTREAM_IDLE_TIMEOUT_S idle
and unwatched (or the session's own `idle_timeout_s`; 0 turns it off) it is stopped, so
a forgotten session gives its browser slot back.
"""

from __future__ import annotations


class IdleTimeouts:
    def __init__(self, default_s: float) -> None:
        self._default_s = default_s
        self._since: dict[str, float] = {}  # session id -> idle and unwatched since

    def timeout_for(self, own_timeout_s: float | None) -> float:
        return self._default_s if own_timeout_s is None else float(own_timeout_s)

    def expired(self, session_id: str, now: float, *, idle: bool, viewers: int,
                own_timeout_s: float | None = None) -> bool:
        """Whether the session has now been idle and unwatched for its whole timeout."""
        timeout = self.timeout_for(own_timeout_s)
        if timeout <= 0 or not idle or viewers > 0:
            self._since.pop(session_id, None)
            return False
        since = self._since.setdefault(session_id, now)
        return now - since >= timeout

    def forget(self, session_id: str) -> None:
        self._since.pop(session_id, None)


__all__ = ["IdleTimeouts"]
