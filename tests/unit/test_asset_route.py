"""`GET /assets/{sha256}` on an app of its own (the API's error handlers, sources of
assets behind the same Protocol, a real recording store): bytes, headers and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pipeline.asset_cache import Asset, AssetCache, asset_id
from pipeline.errors import RegistryUnavailable
from pipeline.recording_store import RecordingStore
from serve.assets import AssetService, NodeAssets, StoredAssets, mount_assets
from serve.errors import install_error_handlers

FONT = Asset.of(b"wOF2 font bytes", "font/woff2")
SHEET = Asset.of(b"@font-face { src: url(/assets/x) }", "text/css; charset=utf-8")


class CacheSource:
    """A node's cache, asked directly."""

    def __init__(self, *assets: Asset) -> None:
        self.cache = AssetCache(1 << 20)
        self.asked: list[str] = []
        for each in assets:
            self.cache.put(each)

    async def find(self, wanted: str) -> Asset | None:
        self.asked.append(wanted)
        return self.cache.get(wanted)


async def client(service: AssetService) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    mount_assets(app)
    app.state.assets = service
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                 base_url="http://gateway.test") as http:
        yield http


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    async for http in client(AssetService([CacheSource(FONT, SHEET)])):
        yield http


async def test_an_asset_is_served_with_its_type_and_cached_for_good(
        api: httpx.AsyncClient) -> None:
    answer = await api.get(f"/assets/{FONT.id}")
    assert answer.status_code == 200
    assert answer.content == FONT.data
    assert answer.headers["content-type"] == "font/woff2"
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert answer.headers["x-content-type-options"] == "nosniff"
    sheet = await api.get(f"/assets/{SHEET.id}")
    assert sheet.headers["content-type"] == "text/css; charset=utf-8"
    assert sheet.content == SHEET.data


async def test_an_unknown_hash_is_a_404_in_words(api: httpx.AsyncClient) -> None:
    unknown = asset_id(b"never loaded")
    answer = await api.get(f"/assets/{unknown}")
    assert answer.status_code == 404
    body = answer.json()
    assert set(body) == {"message", "detail"}
    assert body["message"].startswith(f"no asset {unknown}: no node's asset cache")
    assert "cache-control" not in answer.headers  # a miss may be there later


@pytest.mark.parametrize("name", [FONT.id.upper(), FONT.id[:-1], FONT.id + "a", "g" * 64,
                                  "index.html"])
async def test_a_name_that_is_no_sha256_is_a_422(api: httpx.AsyncClient, name: str) -> None:
    answer = await api.get(f"/assets/{name}")
    assert answer.status_code == 422, answer.text
    assert set(answer.json()) == {"message", "detail"}
    assert answer.json()["message"].startswith("path.asset_id: String should match pattern")


async def test_a_path_out_of_the_assets_matches_no_route(api: httpx.AsyncClient) -> None:
    answer = await api.get("/assets/..%2f..%2finfo.json")
    assert answer.status_code == 404 and set(answer.json()) == {"message", "detail"}


async def test_nothing_lists_the_assets(api: httpx.AsyncClient) -> None:
    for path in ("/assets", "/assets/"):
        answer = await api.get(path)
        assert answer.status_code == 404 and "message" in answer.json()


async def test_the_sources_are_asked_in_order_until_one_has_it() -> None:
    live, stored = CacheSource(FONT), CacheSource(SHEET)
    async for api in client(AssetService([live, stored])):
        assert (await api.get(f"/assets/{FONT.id}")).status_code == 200
        assert stored.asked == []
        assert (await api.get(f"/assets/{SHEET.id}")).status_code == 200
        assert live.asked == [FONT.id, SHEET.id] and stored.asked == [SHEET.id]


class Holder:
    """A node's streamer actor handle as the gateway calls it: `asset.remote(id)`."""

    def __init__(self, cache: AssetCache) -> None:
        self.asset = self
        self.cache = cache

    async def remote(self, wanted: str) -> Asset | None:
        return self.cache.get(wanted)


class Registry:
    def __init__(self, *holders: Holder, down: bool = False) -> None:
        self.holders, self.down = holders, down
        self.asked = 0

    async def asset_holder(self, wanted: str) -> Any | None:
        self.asked += 1
        if self.down:
            raise RegistryUnavailable("Ray is restarting it")
        return next((h for h in self.holders if h.cache.get(wanted)), None)


async def test_the_node_that_has_it_hands_it_over_and_a_registry_away_is_a_503() -> None:
    cache = AssetCache(1 << 20)
    cache.put(FONT)
    async for api in client(AssetService([NodeAssets(Registry(Holder(cache)))])):
        assert (await api.get(f"/assets/{FONT.id}")).content == FONT.data
        assert (await api.get(f"/assets/{SHEET.id}")).status_code == 404
    async for api in client(AssetService([NodeAssets(Registry(down=True))])):
        answer = await api.get(f"/assets/{FONT.id}")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "2"
        assert "registry is not answering" in answer.json()["message"]


async def test_a_replica_asks_the_registry_once_per_asset_until_its_node_lets_it_go() -> None:
    first, second = Holder(AssetCache(1 << 20)), Holder(AssetCache(1 << 20))
    first.cache.put(FONT)
    registry = Registry(first, second)
    async for api in client(AssetService([NodeAssets(registry)])):
        for _ in range(3):
            assert (await api.get(f"/assets/{FONT.id}")).content == FONT.data
        assert registry.asked == 1
        # The first node's streamer restarted empty; another node has it now.
        first.cache = AssetCache(1 << 20)
        second.cache.put(FONT)
        assert (await api.get(f"/assets/{FONT.id}")).content == FONT.data
        assert registry.asked == 2


async def test_a_recording_in_the_store_serves_its_assets_until_it_is_deleted(
        tmp_path: Path) -> None:
    store = RecordingStore(str(tmp_path))
    store.write_asset("rec1", FONT)
    store.write_asset("rec2", FONT)
    async for api in client(AssetService([StoredAssets(store)])):
        answer = await api.get(f"/assets/{FONT.id}")
        assert answer.status_code == 200 and answer.content == FONT.data
        assert answer.headers["content-type"] == "font/woff2"
        store.delete("rec1")
        assert (await api.get(f"/assets/{FONT.id}")).status_code == 200  # rec2 keeps it
        store.delete("rec2")
        assert (await api.get(f"/assets/{FONT.id}")).status_code == 404
