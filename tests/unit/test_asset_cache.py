"""The node's asset cache (pipeline/asset_cache.py): addressed by hash, bounded by bytes,
the asset put longest ago out first."""

from __future__ import annotations

import hashlib

import pytest

from pipeline.asset_cache import Asset, AssetCache, asset_id, valid_asset_id
from pipeline.config import Settings


def asset(data: bytes, content_type: str = "image/png") -> Asset:
    return Asset.of(data, content_type)


def test_an_asset_is_addressed_by_the_sha256_of_its_bytes() -> None:
    found = asset(b"body { color: red }", "text/css")
    assert found.id == hashlib.sha256(b"body { color: red }").hexdigest() == asset_id(found.data)
    cache = AssetCache(1024)
    assert cache.put(found)
    assert cache.get(found.id) == found and found.id in cache
    assert cache.get(asset_id(b"never put")) is None
    # The same bytes under another URL are the same asset.
    assert cache.put(asset(b"body { color: red }", "text/css"))
    assert len(cache) == 1 and cache.nbytes == len(found.data)


def test_over_capacity_the_asset_put_longest_ago_goes_first() -> None:
    cache = AssetCache(100)
    first, second, third = asset(b"a" * 40), asset(b"b" * 40), asset(b"c" * 40)
    for each in (first, second):
        assert cache.put(each)
    assert cache.nbytes == 80
    assert cache.put(third)
    assert first.id not in cache and second.id in cache and third.id in cache
    assert cache.nbytes == 80 <= cache.capacity


def test_putting_an_asset_again_makes_it_the_newest() -> None:
    cache = AssetCache(100)
    first, second, third = asset(b"a" * 40), asset(b"b" * 40), asset(b"c" * 40)
    cache.put(first)
    cache.put(second)
    cache.put(first)  # a session loaded it again
    cache.put(third)
    assert first.id in cache and second.id not in cache and third.id in cache


def test_an_asset_larger_than_the_cache_is_refused_and_puts_nothing_out() -> None:
    cache = AssetCache(100)
    small = asset(b"s" * 10)
    cache.put(small)
    assert not cache.put(asset(b"x" * 101))
    assert small.id in cache and len(cache) == 1
    assert not AssetCache(0).put(small)


def test_only_a_lower_case_hex_sha256_is_an_asset_id() -> None:
    good = asset_id(b"x")
    assert valid_asset_id(good)
    for bad in (good.upper(), good[:-1], good + "0", "../" + good[3:], "", "g" * 64):
        assert not valid_asset_id(bad), bad


def test_the_cache_is_256_mib_a_node_unless_rrstream_asset_cache_bytes_says(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().asset_cache_bytes == 256 * 2**20
    monkeypatch.setenv("RRSTREAM_ASSET_CACHE_BYTES", "1048576")
    assert Settings().asset_cache_bytes == 1 << 20
