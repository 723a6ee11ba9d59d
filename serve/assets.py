"""`GET /assets/{sha256}`: a stylesheet, font or image a session's browser loaded, served
to viewers (pipeline/asset_cache.py; docs/architecture.md, "Assets").

(No `from __future__ import annotations`: FastAPI reads these signatures at run time.)

Open without a key, like the viewer's own files: an asset is named only by the SHA-256
of its bytes, which a stream or a recording hands its viewers, and nothing lists them
(docs/security.md). The bytes are looked for where they are: each node's asset cache and
the recordings in its local store (the registry asks which node has it; the bytes then
come from that node's streamer in one call, at most MAX_ASSET_BYTES), then the store the
cluster shares. The route holds nothing itself; unit tests build a small app with
sources of their own (tests/unit/test_asset_route.py).
"""

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.responses import Response

from pipeline.asset_cache import Asset
from pipeline.errors import AssetNotFound, describe_error
from pipeline.recording_store import RecordingStore
from serve.errors import error_answer

_CALL_TIMEOUT_S = 10.0
MAX_REMEMBERED = 10_000  # assets whose node a replica remembers
_log = logging.getLogger(__name__)
# An asset's name is its content: it never changes, so a browser keeps it for good.
# Served as what it is and nothing else: never sniffed, and a page (an SVG opened on its
# own) runs no script on the gateway's origin.
HEADERS = {"Cache-Control": "public, max-age=31536000, immutable",
           "X-Content-Type-Options": "nosniff",
           "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox"}


class AssetSource(Protocol):
    """One place assets are looked for."""

    async def find(self, asset_id: str) -> Asset | None: ...


class Holders(Protocol):
    """Which node has an asset (the registry: serve/registry_client.py)."""

    async def asset_holder(self, asset_id: str) -> Any | None: ...


class NodeAssets:
    """The nodes' asset caches and local stores: the registry says which node has it, and
    that node's streamer actor hands it over. The replica remembers which node that was
    (for the newest MAX_REMEMBERED assets), so the registry is asked once per asset, not
    once per viewer; a node that no longer has it is forgotten and the registry asked
    again."""

    def __init__(self, holders: Holders) -> None:
        self._holders = holders
        self._known: OrderedDict[str, Any] = OrderedDict()  # asset id -> its streamer

    async def find(self, asset_id: str) -> Asset | None:
        holder = self._known.get(asset_id)
        if holder is not None:
            found = await self._fetch(holder, asset_id)
            if found is not None:
                return found
            self._known.pop(asset_id, None)
        holder = await self._holders.asset_holder(asset_id)
        if holder is None:
            return None
        found = await self._fetch(holder, asset_id)
        if found is not None:
            self._known[asset_id] = holder
            while len(self._known) > MAX_REMEMBERED:
                self._known.popitem(last=False)
        return found

    async def _fetch(self, holder: Any, asset_id: str) -> Asset | None:
        try:
            found: Asset | None = await asyncio.wait_for(holder.asset.remote(asset_id),
                                                         _CALL_TIMEOUT_S)
        except Exception as exc:  # its node went away since it said so
            _log.warning("the node that had asset %s did not hand it over: %s", asset_id,
                         describe_error(exc))
            return None
        return found


class StoredAssets:
    """The recordings in the store the cluster shares (S3)."""

    def __init__(self, store: RecordingStore) -> None:
        self._store = store

    async def find(self, asset_id: str) -> Asset | None:
        return await asyncio.to_thread(self._store.find_asset, asset_id)


class AssetService:
    def __init__(self, sources: Sequence[AssetSource]) -> None:
        self._sources = list(sources)

    @classmethod
    def over_ray(cls, holders: Holders, shared: RecordingStore | None) -> "AssetService":
        """The gateway's: every node, then the shared store if there is one."""
        sources: list[AssetSource] = [NodeAssets(holders)]
        if shared is not None:
            sources.append(StoredAssets(shared))
        return cls(sources)

    async def get(self, asset_id: str) -> Asset:
        for source in self._sources:
            found = await source.find(asset_id)
            if found is not None:
                return found
        raise AssetNotFound(asset_id)


router = APIRouter(tags=["assets"])
_Id = Annotated[str, Path(pattern="^[0-9a-f]{64}$", description="The SHA-256 of the "
                          "asset's bytes, in lower-case hex (as the stream names it).")]


@router.get("/assets/{asset_id}", response_class=Response,
            responses={200: {"content": {"text/css": {}, "font/woff2": {}, "image/png": {}},
                             "description": "The asset's bytes, with its content type"},
                       404: error_answer(404, "No node's asset cache and no recording has "
                                         "an asset of this hash"),
                       422: error_answer(422, "Not a SHA-256 in lower-case hex"),
                       503: error_answer(503)})
async def get_asset(asset_id: _Id, request: Request) -> Response:
    """A stylesheet, font or image a session's browser loaded, by the SHA-256 of its bytes:
    what a stream or recording names `/assets/<sha256>` in place of the page's URL. No API
    key: the hash is the only name it has."""
    service: AssetService = request.app.state.assets
    asset = await service.get(asset_id)
    return Response(asset.data, media_type=asset.content_type, headers=HEADERS)


def mount_assets(app: FastAPI) -> None:
    """Adds `GET /assets/{sha256}` to `app`; `app.state.assets` is its AssetService."""
    app.include_router(router)


__all__ = ["HEADERS", "AssetService", "AssetSource", "NodeAssets", "StoredAssets",
           "mount_assets", "router"]
