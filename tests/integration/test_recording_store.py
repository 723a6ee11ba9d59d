"""A recording outlives the whole stack: recorded, the stack stopped and started again,
then listed, read back as events, replayed from storage, exported as a screenshot kept
beside it and deleted with it; in a local directory and in an S3-compatible server (moto,
on loopback)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serve.client import Client
from tests.conftest import free_port
from tests.integration.rrstream_up import rrstream_up
from tests.integration.s3_server import S3Server, s3_server

STEPS = [{"action": "click", "selector": "#add-item"}, {"action": "wait", "ms": 600}] * 3


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


async def recorded(base_url: str, page: str) -> tuple[str, list[dict[str, Any]]]:
    """Records a short workflow to its end; its id and its events as first stored."""
    async with Client(base_url, timeout=60) as client:
        info = await client.create_session(page, name="outlives the stack", steps=STEPS,
                                           close_when_done=True)
        sid = info["id"]
        await client.wait_for_state(sid, {"stopped"}, 90)
        for _ in range(120):
            if (await client.recording(sid))["ended_at"] is not None:
                break
            await asyncio.sleep(0.25)
        return sid, await client.recording_events(sid)


@pytest.mark.parametrize("where", ["local", "s3"])
async def test_a_recording_outlives_the_whole_stack(where: str, tmp_path: Path, demo_site: Any,
                                                    s3: S3Server) -> None:
    prefix = f"outlives-{os.getpid()}"
    store = (s3.store_env(prefix) if where == "s3"
             else {"RRSTREAM_RECORDINGS_URL": str(tmp_path / "recordings")})
    env = {**os.environ, "RRSTREAM_WARM_BROWSERS": "0", "RRSTREAM_BROWSER_SLOTS": "2", **store}
    page = f"{demo_site.url}/list.html"

    port = free_port()
    with rrstream_up("--port", str(port), "--dashboard-port", str(free_port()), "--no-demo",
                     env=env):
        sid, before = await recorded(f"http://127.0.0.1:{port}", page)

    port = free_port()
    with rrstream_up("--port", str(port), "--dashboard-port", str(free_port()), "--no-demo",
                     env=env):
        async with Client(f"http://127.0.0.1:{port}", timeout=60) as client:
            listed = await client.recordings(name="OUTLIVES")
            assert [r["id"] for r in listed["items"]] == [sid]
            info = listed["items"][0]
            assert info["urls"] == [page] and info["page_count"] == 1
            assert info["duration_ms"] > 1_500 and not info["has_errors"]
            after = await client.recording_events(sid)
            assert after == before
            assert after[0]["type"] == 4 and after[0]["data"]["href"] == page
            added = [e for e in after if e["type"] == 3 and "Item" in json.dumps(e)]
            assert added, "the clicks' new items are in the recording"

            replay = client.replay(sid, on_gap="raise")
            async with asyncio.timeout(60):
                await replay.run()
            replayed = [e for f in replay.frames for e in f.events]
            assert replay.close_code == 1000 and replay.end is not None, (
                replay.close_code, replay.close_reason, replay.end)
            assert replayed == after, (
                [(f.header.first_seq, f.header.last_seq, f.header.event_count)
                 for f in replay.frames], replay.controls, replay.close_reason,
                [e for e in after if e not in replayed])

            # A screenshot is kept beside the recording (with S3, in the store, not on
            # the node that rendered it) and deleted with it.
            job = await client.create_export(sid, format="png", at_ms=500, width=640,
                                             height=400)
            await client.wait_for_export(sid, job["id"], timeout_s=120)
            size = await client.download_export(sid, job["id"], tmp_path / "shot.png")
            assert size > 1_000 and (tmp_path / "shot.png").read_bytes()[:4] == b"\x89PNG"
            if where == "s3":
                keys = s3.keys(prefix)
                assert f"{prefix}/{sid}/info.json" in keys
                assert f"{prefix}/{sid}/chunks/00000000.frames" in keys
                assert f"{prefix}/{sid}/exports/{job['id']}.png" in keys
            else:
                folder = tmp_path / "recordings" / sid
                assert (folder / "info.json").exists()
                assert (folder / "exports" / f"{job['id']}.png").exists()
            await client.delete_recording(sid)
            if where == "s3":
                assert not [k for k in s3.keys(prefix) if k.startswith(f"{prefix}/{sid}/")]
            else:
                assert not (tmp_path / "recordings" / sid).exists()
