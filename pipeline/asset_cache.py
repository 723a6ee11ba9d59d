"""AssetCache: the stylesheets, fonts and images a node's sessions loaded, by content hash.

Viewers cannot always fetch what a recorded page loaded (another network, the page's
cookies, a short-lived URL), so each session hands what its browser loaded to its node's
cache (in the node's streamer actor), the stream names it `/assets/<sha256>` instead of
its URL (pipeline/asset_urls.py), and the gateway serves it from here (serve/assets.py).
Bounded by bytes (RRSTREAM_ASSET_CACHE_BYTES); the asset put longest ago goes first.
Plain Python, in memory: a restarted streamer starts empty.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

ASSET_PATH = "/assets/"  # where the gateway serves an asset: ASSET_PATH + its id
MAX_ASSET_BYTES = 8 * 2**20  # one asset; bigger ones are not cached (their URL stays)
_HEX = frozenset("0123456789abcdef")


def asset_id(data: bytes) -> str:
    """An asset's address: the SHA-256 of its bytes, in lower-case hex."""
    return hashlib.sha256(data).hexdigest()


def valid_asset_id(text: str) -> bool:
    return len(text) == 64 and all(c in _HEX for c in text)


@dataclass(slots=True, frozen=True)
class Asset:
    """What a page loaded: its bytes and the content type they were served with."""

    id: str
    content_type: str
    data: bytes

    @classmethod
    def of(cls, data: bytes, content_type: str) -> Asset:
        return cls(asset_id(data), content_type, data)


class AssetCache:
    """At most `capacity` bytes of assets; putting one again makes it the newest."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._assets: OrderedDict[str, Asset] = OrderedDict()
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._assets)

    def __contains__(self, sha: object) -> bool:
        return sha in self._assets

    def put(self, asset: Asset) -> bool:
        """Keeps `asset`, putting out the oldest while over capacity; False (and nothing
        put out) for one larger than the whole cache."""
        if len(asset.data) > self.capacity:
            return False
        known = self._assets.pop(asset.id, None)
        if known is not None:
            self._bytes -= len(known.data)
        self._assets[asset.id] = asset
        self._bytes += len(asset.data)
        while self._bytes > self.capacity:
            _, oldest = self._assets.popitem(last=False)
            self._bytes -= len(oldest.data)
        return True

    def get(self, sha: str) -> Asset | None:
        return self._assets.get(sha)


__all__ = ["ASSET_PATH", "MAX_ASSET_BYTES", "Asset", "AssetCache", "asset_id",
           "valid_asset_id"]
