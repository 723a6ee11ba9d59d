"""A recording keeps a copy of the assets its stream names (pipeline/stream.py,
pipeline/recording.py, pipeline/recording_store.py); the node's streamer serves them from
its cache, then from its store once the cache let them go; retention deletes them with
their recording."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.asset_cache import Asset, AssetCache
from pipeline.config import Settings
from pipeline.models import RecordingInfo
from pipeline.protocol import PageBatch
from pipeline.recording_store import RecordingStore
from pipeline.retention import Retention
from pipeline.stream import SessionStream
from pipeline.streamer import Streamer

FONT = Asset.of(b"wOF2 font", "font/woff2")
IMAGE = Asset.of(b"\x89PNG image", "image/png")
NOW = 1_000_000.0


def naming(*assets: Asset, checkout: bool = False) -> PageBatch:
    text = "[" + ",".join(f'{{"src":"/assets/{a.id}"}}' for a in assets) + "]"
    return dataclasses.replace(PageBatch(checkout, len(assets) or 1, 1.0, 2.0, text or "[]"),
                               assets=tuple(a.id for a in assets))


async def test_a_recording_keeps_each_asset_its_batches_name_once(tmp_path: Path) -> None:
    store = RecordingStore(str(tmp_path))
    cache = AssetCache(1 << 20)
    cache.put(FONT)
    cache.put(IMAGE)
    stream = SessionStream("s1", Settings(recordings_url=""), 0,
                           recording=store.writer("s1", "deflate-raw"), assets=cache)
    await stream.push([naming(FONT, IMAGE, checkout=True), naming(FONT)])
    await stream.push([naming(IMAGE)])
    stream.close()
    await stream.flush_recording(5.0)
    kept = sorted(p.name for p in (tmp_path / "s1" / "assets").iterdir())
    assert kept == sorted([FONT.id, IMAGE.id])
    assert store.find_asset(FONT.id) == FONT and store.find_asset(IMAGE.id) == IMAGE
    assert store.keeps_asset(FONT.id)
    assert store.keeps_asset(FONT.id, "s1") and not store.keeps_asset(FONT.id, "s2")
    assert store.info("s1").batches == 3


async def test_an_asset_the_cache_let_go_is_left_out_and_the_recording_goes_on(
        tmp_path: Path) -> None:
    store = RecordingStore(str(tmp_path))
    stream = SessionStream("s1", Settings(recordings_url=""), 0,
                           recording=store.writer("s1", "deflate-raw"), assets=AssetCache(0))
    await stream.push([naming(FONT, checkout=True)])
    stream.close()
    await stream.flush_recording(5.0)
    assert store.find_asset(FONT.id) is None and store.info("s1").batches == 1


class _AssetsFail(RecordingStore):
    def write_asset(self, recording_id: str, asset: Asset) -> None:
        raise OSError("disk full")


async def test_an_asset_that_cannot_be_written_is_left_out_and_the_recording_goes_on(
        tmp_path: Path) -> None:
    store = _AssetsFail(str(tmp_path))
    cache = AssetCache(1 << 20)
    cache.put(FONT)
    stream = SessionStream("s1", Settings(recordings_url=""), 0,
                           recording=store.writer("s1", "deflate-raw"), assets=cache)
    await stream.push([naming(FONT, checkout=True)])
    await stream.push([naming(IMAGE)])
    stream.close()
    await stream.flush_recording(5.0)
    assert store.find_asset(FONT.id) is None
    assert store.info("s1").batches == 2


async def test_the_streamer_serves_an_asset_from_its_cache_then_from_its_recordings(
        tmp_path: Path) -> None:
    streamer = Streamer(Settings(recordings_url=str(tmp_path), asset_cache_bytes=1 << 20))
    streamer.put_asset(FONT)
    assert await streamer.asset(FONT.id) == FONT and await streamer.has_asset(FONT.id)
    assert await streamer.asset(IMAGE.id) is None and not await streamer.has_asset(IMAGE.id)
    await streamer.open("s1")
    await streamer.push("s1", 0, [naming(FONT, checkout=True)])
    await streamer.close("s1", 0)
    # A restarted streamer has an empty cache: the recording still has the font.
    again = Streamer(Settings(recordings_url=str(tmp_path), asset_cache_bytes=1 << 20))
    assert await again.asset(FONT.id) == FONT and await again.has_asset(FONT.id)
    await again.delete_recording("s1")
    assert await again.asset(FONT.id) is None and not await again.has_asset(FONT.id)
    await streamer.close_all()
    await again.close_all()


def test_retention_deletes_a_recording_with_its_assets_and_keeps_those_of_the_rest(
        tmp_path: Path) -> None:
    store = RecordingStore(str(tmp_path))
    for recording_id, created in (("old", NOW - 300), ("new", NOW - 10)):
        store.write_info(RecordingInfo(id=recording_id, codec="deflate-raw",
                                       created_at=created, ended_at=created + 1))
    store.write_asset("old", FONT)
    store.write_asset("old", IMAGE)
    store.write_asset("new", IMAGE)
    retention = Retention(store, set, max_age_s=100, max_bytes=0, every_s=60,
                          clock=lambda: NOW)
    assert retention.run_once() == ["old"]
    assert not (tmp_path / "old").exists()
    assert store.find_asset(FONT.id) is None and not (tmp_path / ".assets" / FONT.id).exists()
    assert store.find_asset(IMAGE.id) == IMAGE
    assert [r.id for r in store.list()] == ["new"]
    assert set(store.usage()) == {"new"}  # the assets' index is no recording
