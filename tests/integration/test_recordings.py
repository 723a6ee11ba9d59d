"""Recordings through the real gateway: a session is stored as it streams, then listed,
fetched, decoded and deleted."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from pipeline.codec import make_decoder
from pipeline.protocol import CloseCode, decode_frame
from pipeline.recording import iter_frames
from tests.integration.test_api import hello


async def watch_until_end(url: str) -> dict[int, str]:
    """A live viewer from its join to the session's end: batch text by sequence number."""
    batches: dict[int, str] = {}
    async with websockets.connect(url, max_size=None) as ws:
        welcome = await hello(ws)
        assert welcome["type"] == "welcome", welcome
        decoder = make_decoder(welcome["codec"])
        with pytest.raises(websockets.ConnectionClosedOK):
            async with asyncio.timeout(90):
                while True:
                    message = await ws.recv()
                    if isinstance(message, str):
                        continue
                    header, payload = decode_frame(message)
                    text = decoder.decode(payload, segment_start=header.segment_start)
                    lines = text.decode().splitlines()
                    batches.update(zip(range(header.first_seq, header.last_seq + 1), lines,
                                       strict=True))
    return batches


def recorded_batches(frames: bytes, codec: str) -> dict[int, str]:
    decoder = make_decoder(codec)
    batches: dict[int, str] = {}
    for frame in iter_frames(frames):
        header, payload = decode_frame(frame)
        lines = decoder.decode(payload, segment_start=header.segment_start).decode().splitlines()
        assert len(lines) == 1 and header.first_seq == header.last_seq
        batches[header.first_seq] = lines[0]
    return batches


async def wait_until_finished(api, sid: str) -> dict:
    deadline = time.monotonic() + 30
    while (info := (await api.get(f"/recordings/{sid}")).json()).get("ended_at") is None:
        assert time.monotonic() < deadline, f"recording never finished: {info}"
        await asyncio.sleep(0.25)
    return info


async def test_a_session_is_recorded_listed_fetched_and_deleted(api, stack, demo_site) -> None:
    response = await api.post("/sessions", json={
        "url": f"{demo_site.url}/list.html",
        "steps": [{"action": "click", "selector": "#add-item"}, {"action": "wait", "ms": 700}] * 4,
    })
    assert response.status_code == 201, response.text
    sid = response.json()["id"]
    viewer = asyncio.create_task(watch_until_end(f"{stack.ws_url}/sessions/{sid}/stream"))
    deadline = time.monotonic() + 60
    while (await api.get(f"/sessions/{sid}")).json()["events"] == 0:
        assert time.monotonic() < deadline, "the session recorded nothing"
        await asyncio.sleep(0.25)
    await asyncio.sleep(3)

    deleting = await api.delete(f"/recordings/{sid}")
    assert deleting.status_code == 409, deleting.text
    assert "still being written" in deleting.json()["detail"]

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
        assert gone.json() == {"detail": f"no recording with id {sid!r}"}
    assert sid not in [r["id"] for r in (await api.get("/recordings")).json()]


@pytest.mark.parametrize("path", ["/recordings/%2E%2E", "/recordings/x.json/frames",
                                  "/recordings/a%20b"])
async def test_a_file_name_is_not_a_recording_id(api, path) -> None:
    response = await api.get(path)
    assert response.status_code == 404
    assert response.json()["detail"].startswith("no recording with id")


async def test_a_recording_replays_in_real_time_over_protocol_v1(api, stack, demo_site) -> None:
    sid = (await api.post("/sessions", json={
        "url": f"{demo_site.url}/list.html", "close_when_done": True,
        "steps": [{"action": "wait", "ms": 500}, {"action": "click", "selector": "#add-item"},
                  {"action": "wait", "ms": 1500}, {"action": "click", "selector": "#add-item"},
                  {"action": "wait", "ms": 500}],
    })).json()["id"]
    info = await wait_until_finished(api, sid)
    recorded = recorded_batches((await api.get(f"/recordings/{sid}/frames")).content,
                                info["codec"])

    controls: list[dict] = []
    replayed: dict[int, str] = {}
    arrivals: list[tuple[float, float, float]] = []  # (received, first_ts, last_ts)
    async with websockets.connect(f"{stack.ws_url}/recordings/{sid}/stream",
                                  max_size=None) as ws:
        welcome = await hello(ws)
        assert welcome["type"] == "welcome", welcome
        assert (welcome["codec"], welcome["resume"], welcome["session_id"]) == (
            info["codec"], "reset", sid)
        decoder = make_decoder(welcome["codec"])
        with pytest.raises(websockets.ConnectionClosedOK) as closed:
            async with asyncio.timeout(60):
                while True:
                    message = await ws.recv()
                    if isinstance(message, str):
                        controls.append(json.loads(message))
                        continue
                    header, payload = decode_frame(message)
                    arrivals.append((time.monotonic(), header.first_ts, header.last_ts))
                    if not replayed:
                        assert header.reset and header.segment_start
                    text = decoder.decode(payload, segment_start=header.segment_start)
                    replayed.update(zip(range(header.first_seq, header.last_seq + 1),
                                        text.decode().splitlines(), strict=True))
    assert closed.value.rcvd.code == 1000
    assert controls[0] == {"type": "reset", "reason": "join", "seq": 1}
    assert controls[-1] == {"type": "end", "reason": "stopped", "state": "stopped"}
    assert replayed == recorded
    # Paced by the page's clock: each frame leaves when its newest event is as far from
    # the first event as it was in the page, never earlier, and not much later (the
    # bound is loose: this machine is shared).
    start, first_ts = arrivals[0][0], arrivals[0][1]
    for received, _, last_ts in arrivals:
        due = (last_ts - first_ts) / 1000.0
        assert due - 0.05 <= received - start <= due + 2.0, (received - start, due)
    assert (arrivals[-1][2] - first_ts) > 1500  # the session's waits are in the replay


async def test_replaying_an_unknown_recording_closes_4404(stack) -> None:
    async with websockets.connect(f"{stack.ws_url}/recordings/nosuchid/stream") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd.code == CloseCode.UNKNOWN_SESSION
    assert "no recording with id 'nosuchid'" in closed.value.rcvd.reason
