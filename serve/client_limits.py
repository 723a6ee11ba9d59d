"""ClientLimits: what one client may do on one replica, per RRSTREAM_LIMIT_* / MAX_*.

Rates (session creations per key, stream connects per address) use the `limits` library's
moving window in this replica's memory; open connections per address are a plain count.
A refusal says how long to wait (`Retry-After`, or the reason of a 1013 close).
Plain Python, no Ray: the gateway holds one, unit tests drive it with their own clock.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from pipeline.config import Settings


@dataclass(frozen=True)
class LimitRefusal:
    message: str
    retry_after_s: int


class ClientLimits:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._creations = parse(settings.limit_session_creations)
        self._connects = parse(settings.limit_stream_connects)
        self._max_open = settings.max_connections_per_client
        self._max_viewers = settings.max_viewers_per_session
        self._open: Counter[str] = Counter()
        self._clock = clock

    def session_creation(self, who: str) -> LimitRefusal | None:
        """One more session created by `who` (an API key's identity, or an address)."""
        if self._limiter.hit(self._creations, "create", who):
            return None
        return LimitRefusal(f"too many sessions created: at most {self._creations} "
                       "(RRSTREAM_LIMIT_SESSION_CREATIONS)",
                       self._wait(self._creations, "create", who))

    def stream_connect(self, address: str, viewers_of_session: int | None) -> LimitRefusal | None:
        """A WebSocket from `address` wants to open; `viewers_of_session` already watch
        its session on this replica (None for a replay). On None, call `opened` then
        `closed` when it ends."""
        if self._open[address] >= self._max_open:
            return LimitRefusal(f"too many open streams from {address}: at most {self._max_open} "
                           "(RRSTREAM_MAX_CONNECTIONS_PER_CLIENT)", 5)
        if viewers_of_session is not None and viewers_of_session >= self._max_viewers:
            return LimitRefusal(f"the session has its maximum of {self._max_viewers} viewers "
                           "(RRSTREAM_MAX_VIEWERS_PER_SESSION)", 10)
        if not self._limiter.hit(self._connects, "connect", address):
            return LimitRefusal(f"too many stream connects from {address}: at most "
                           f"{self._connects} (RRSTREAM_LIMIT_STREAM_CONNECTS)",
                           self._wait(self._connects, "connect", address))
        return None

    def opened(self, address: str) -> None:
        self._open[address] += 1

    def closed(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def open_count(self, address: str) -> int:
        return self._open[address]

    def _wait(self, limit: RateLimitItem, namespace: str, who: str) -> int:
        stats = self._limiter.get_window_stats(limit, namespace, who)
        return max(1, math.ceil(stats.reset_time - self._clock()))


class TrustedProxies:
    """Peers whose X-Forwarded-For names the client (parsed once, asked per request)."""

    def __init__(self, networks: list[str]) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def client(self, peer: str | None, headers: Mapping[str, str]) -> str:
        """Who is asking: the peer, unless the peer is a trusted proxy, in which case the
        nearest address in X-Forwarded-For that is not itself a trusted proxy."""
        address = peer or "unknown"
        if not self._trusted(address):
            return address
        forwarded = [a.strip() for a in headers.get("x-forwarded-for", "").split(",")
                     if a.strip()]
        for hop in reversed(forwarded):
            address = hop
            if not self._trusted(hop):
                break
        return address

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)


__all__ = ["ClientLimits", "LimitRefusal", "TrustedProxies"]
