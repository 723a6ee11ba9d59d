"""Recordings through the real gateway: a session is stored as it streams, then listed,
fetched, decoded and deleted."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from pipeline.protocol import CloseCode, End, Reset
from serve.client import ApiError, EventType, Frame, StreamClosed, Viewer, stored_frames


def batches(frames: list[Frame]) -> dict[int, str]:
    return {seq: line.decode() for frame in frames for seq, line in frame.batches}


async def watch_until_end(viewer: Viewer) -> dict[int, str]:
    """A live viewer from its join to the session's end: batch text by sequence number.
    `run()` returns only when the stream ended with 1000; it raises for anything else."""
    async with asyncio.timeout(90):
        await viewer.run()
    assert viewer.close_code == 1000
    return batches(viewer.frames)


def recorded_batches(frames: bytes, codec: str) -> dict[int, str]:
    stored = list(stored_frames(frames, codec))
    assert all(f.header.first_seq == f.header.last_seq for f in stored), "one batch a record"
    return batches(stored)


async def wait_until_finished(api, sid: str) -> dict:
    deadline = time.monotonic() + 30
    while (info := (await api.get(f"/recordings/{sid}")).json()).get("ended_at") is None:
        assert time.monotonic() < deadline, f"recording never finished: {info}"
        await asyncio.sleep(0.25)
    return info


async def test_a_session_is_recorded_listed_fetched_and_deleted(api, client, stack,
                                                                demo_site) -> None:
    response = await api.post("/sessions", json={
        "url": f"{demo_site.url}/list.html",
        "steps": [{"action": "click", "selector": "#add-item"}, {"action": "wait", "ms": 700}] * 4,
    })
    assert response.status_code == 201, response.text
    sid = response.json()["id"]
    viewer = asyncio.create_task(watch_until_end(client.viewer(sid, on_gap="raise")))
    deadline = time.monotonic() + 60
    while (await api.get(f"/sessions/{sid}")).json()["events"] == 0:
        assert time.monotonic() < deadline, "the session recorded nothing"
        await asyncio.sleep(0.25)
    await asyncio.sleep(3)

    deleting = await api.delete(f"/recordings/{sid}")
    assert deleting.status_code == 409, deleting.text
    assert "still being written" in deleting.json()["message"]

    assert (await api.delete(f"/sessions/{sid}")).status_code == 200
    live = await viewer
    info = await wait_until_finished(api, sid)

    listed = (await api.get("/recordings")).json()
    assert sid in [r["id"] for r in listed]
    created = [r["created_at"] for r in listed]
    assert created == sorted(created, reverse=True)
    assert info["events"] > 0 and info["codec"] == stack.settings.codec
    assert info["first_seq"] == 1

    frames = await api.get(f"/recordings/{sid}/frames")
    assert frames.status_code == 200
    assert frames.headers["content-type"] == "application/octet-stream"
    recorded = recorded_batches(frames.content, info["codec"])
    assert list(recorded) == list(range(1, info["last_seq"] + 1))
    assert len(recorded) == info["batches"]
    assert sum(len(json.loads(text)) for text in recorded.values()) == info["events"]
    assert "Item" in "".join(recorded.values())
    # The viewer joined at a checkout and stayed to the end: what it got is the
    # recording's tail, batch for batch.
    assert live and max(live) == info["last_seq"]
    assert live == {seq: recorded[seq] for seq in range(min(live), info["last_seq"] + 1)}

    assert (await api.delete(f"/recordings/{sid}")).status_code == 204
    for method, path in (("GET", f"/recordings/{sid}"), ("GET", f"/recordings/{sid}/frames"),
                         ("DELETE", f"/recordings/{sid}")):
        gone = await api.request(method, path)
        assert gone.status_code == 404, (method, path, gone.text)
        assert gone.json() == {"message": f"no recording with id {sid!r}",
                               "detail": f"no recording with id {sid!r}"}
    assert sid not in [r["id"] for r in (await api.get("/recordings")).json()]


@pytest.mark.parametrize("path", ["/recordings/%2E%2E", "/recordings/x.json/frames",
                                  "/recordings/a%20b"])
async def test_a_file_name_is_not_a_recording_id(api, path) -> None:
    response = await api.get(path)
    assert response.status_code == 404
    assert response.json()["message"].startswith("no recording with id")


async def test_a_recording_replays_in_real_time_over_protocol_v1(api, client, demo_site) -> None:
    sid = (await api.post("/sessions", json={
        "url": f"{demo_site.url}/list.html", "close_when_done": True,
        "steps": [{"action": "wait", "ms": 500}, {"action": "click", "selector": "#add-item"},
                  {"action": "wait", "ms": 1500}, {"action": "click", "selector": "#add-item"},
                  {"action": "wait", "ms": 500}],
    })).json()["id"]
    info = await wait_until_finished(api, sid)
    recorded = recorded_batches((await api.get(f"/recordings/{sid}/frames")).content,
                                info["codec"])

    replay = client.replay(sid, on_gap="raise")
    async with asyncio.timeout(60):
        await replay.run()  # returns at close 1000, raises for anything else
    assert replay.close_code == 1000
    assert replay.welcome is not None and len(replay.welcomes) == 1
    assert (replay.welcome.codec, replay.welcome.resume, replay.welcome.session_id) == (
        info["codec"], "reset", sid)
    controls = replay.controls[1:]  # after the welcome
    assert replay.frames[0].header.reset and replay.frames[0].header.segment_start
    replayed = batches(replay.frames)
    arrivals = [(f.arrival_ms / 1000.0, f.header.first_ts, f.header.last_ts)
                for f in replay.frames if f.arrival_ms is not None]
    assert controls[0] == Reset(reason="join", seq=1)
    assert controls[-1] == End(reason="stopped", state="stopped")
    assert replayed == recorded
    # Paced by the page's clock: each frame leaves when its newest event is as far from
    # the first event as it was in the page, never earlier, and not much later (the
    # bound is loose: this machine is shared).
    start, first_ts = arrivals[0][0], arrivals[0][1]
    for received, _, last_ts in arrivals:
        due = (last_ts - first_ts) / 1000.0
        assert due - 0.05 <= received - start <= due + 2.0, (received - start, due)
    assert (arrivals[-1][2] - first_ts) > 1500  # the session's waits are in the replay


async def test_replaying_an_unknown_recording_closes_4404(client) -> None:
    replay = client.replay("nosuchid")
    with pytest.raises(StreamClosed) as closed:
        async with asyncio.timeout(20):
            await replay.run()
    assert closed.value.code == CloseCode.UNKNOWN_SESSION == replay.close_code
    assert "no recording with id 'nosuchid'" in closed.value.reason


async def test_a_session_with_record_false_streams_live_but_is_never_stored(
        client, demo_site) -> None:
    steps = [{"action": "wait", "ms": 500}, {"action": "click", "selector": "#add-item"},
             {"action": "wait", "ms": 500}, {"action": "click", "selector": "#add-item"}]
    unrecorded = (await client.create_session(f"{demo_site.url}/list.html", steps=steps,
                                              record=False))["id"]
    recorded = (await client.create_session(f"{demo_site.url}/list.html", steps=steps))["id"]
    try:
        async with client.viewer(unrecorded, on_gap="raise") as viewer:
            await viewer.wait_for(lambda f: f.full_snapshot, timeout_s=60)
            # The clicks' mutations reach the live viewer like any session's.
            await viewer.wait_for(lambda f: b"Item" in (f.text or b"")
                                  and f.has_event(EventType.INCREMENTAL_SNAPSHOT), timeout_s=60)
        await client.wait_for_session(recorded, lambda info: info["events"] > 0)
    finally:
        for sid in (unrecorded, recorded):
            await client.stop_session(sid)
    deadline = time.monotonic() + 30
    while (await client.recording(recorded)).get("ended_at") is None:
        assert time.monotonic() < deadline, "the recorded session's recording never finished"
        await asyncio.sleep(0.25)
    try:
        listed = [r["id"] for r in await client.recordings()]
        assert recorded in listed
        assert unrecorded not in listed
        with pytest.raises(ApiError) as missing:
            await client.recording(unrecorded)
        assert missing.value.status == 404
        assert missing.value.message == f"no recording with id {unrecorded!r}"
    finally:
        await client.delete_recording(recorded)
