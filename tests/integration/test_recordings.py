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
    assert sid in [r["id"] for r in listed["items"]]
    created = [r["created_at"] for r in listed["items"]]
    assert created == sorted(created, reverse=True)
    assert info["events"] > 0 and info["codec"] == stack.settings.codec
    assert info["first_seq"] == 1
    assert info["urls"] == [f"{demo_site.url}/list.html"] and info["page_count"] == 1
    assert info["chunks"] >= 1 and info["duration_ms"] > 2_000

    events = await api.get(f"/recordings/{sid}/events")
    assert events.status_code == 200 and events.headers["content-type"] == "application/json"
    assert len(events.json()) == info["events"]

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
                         ("GET", f"/recordings/{sid}/events"), ("DELETE", f"/recordings/{sid}")):
        gone = await api.request(method, path)
        assert gone.status_code == 404, (method, path, gone.text)
        assert gone.json() == {"message": f"no recording with id {sid!r}",
                               "detail": f"no recording with id {sid!r}"}
    assert sid not in [r["id"] for r in (await api.get("/recordings")).json()["items"]]


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
    # The first frame too leaves when its newest event is due (a slow snapshot can put
    # tens of ms between a checkout's Meta and its FullSnapshot).
    first_ts = arrivals[0][1]
    start = arrivals[0][0] - (arrivals[0][2] - first_ts) / 1000.0
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
        listed = [r["id"] for r in await client.all_recordings()]
        assert recorded in listed
        assert unrecorded not in listed
        with pytest.raises(ApiError) as missing:
            await client.recording(unrecorded)
        assert missing.value.status == 404
        assert missing.value.message == f"no recording with id {unrecorded!r}"
    finally:
        await client.delete_recording(recorded)


async def test_errors_are_in_the_recording_and_found_by_the_listing(client, fault_site) -> None:
    """A failed step and an error the page threw: counted in the recording's metadata
    (`has_errors`), and in its events as `rrstream.error` custom events (the player's
    markers)."""
    sid = (await client.create_session(fault_site.page("/throws"), name="throws", steps=[
        {"action": "wait", "ms": 800},
        {"action": "click", "selector": "#no-such-button", "timeout_ms": 300}]))["id"]
    calm = (await client.create_session(fault_site.page("/plain"), name="calm", steps=[
        {"action": "wait", "ms": 300}]))["id"]
    try:
        await client.wait_for_session(sid, lambda info: info["error"] is not None, 60)
        await client.wait_for_session(calm, lambda info: info["state"] == "idle", 60)
    finally:
        for session_id in (sid, calm):
            await client.stop_session(session_id)
    deadline = time.monotonic() + 30
    while (await client.recording(sid)).get("ended_at") is None:
        assert time.monotonic() < deadline, "the recording never finished"
        await asyncio.sleep(0.25)
    try:
        info = await client.recording(sid)
        assert info["has_errors"] and info["errors"] == 2, info
        assert info["error"] == "the page threw: the page broke on purpose"
        with_errors = [r["id"] for r in await client.all_recordings(has_errors=True)]
        without = [r["id"] for r in await client.all_recordings(has_errors=False)]
        assert sid in with_errors and sid not in without
        assert calm in without and calm not in with_errors
        errors = [e["data"]["payload"] for e in await client.recording_events(sid)
                  if e["type"] == 5 and e["data"]["tag"] == "rrstream.error"]
        assert [e["kind"] for e in errors] == ["page", "step"]
        assert errors[1]["message"].startswith("step 1 (click) failed")
    finally:
        for session_id in (sid, calm):
            await client.delete_recording(session_id)


async def test_search_finds_a_typed_text_a_visited_url_and_a_clicked_button(
        client, demo_site) -> None:
    """Built while recording: the index is there once the recording is, and a password
    typed into the page (masked by rrweb) is never found."""
    list_page, form_page = f"{demo_site.url}/list.html", f"{demo_site.url}/form.html"
    sid = (await client.create_session(list_page, name="searched", close_when_done=True,
                                       steps=[
        {"action": "click", "selector": "#add-item"},
        {"action": "goto", "url": form_page},
        {"action": "fill", "selector": "#name", "value": "Ada Lovelace"},
        {"action": "fill", "selector": "#password", "value": "hunter2secret"},
        {"action": "wait", "ms": 500}]))["id"]
    await client.wait_for_state(sid, {"stopped"}, 90)
    deadline = time.monotonic() + 30
    while (info := await client.recording(sid)).get("ended_at") is None:
        assert time.monotonic() < deadline, "the recording never finished"
        await asyncio.sleep(0.25)
    try:
        async def hits(**query: str) -> list[dict]:
            return (await client.search(sid, **query))["hits"]

        typed = await hits(text="ada lovelace")
        visited = await hits(url="form.html")
        clicked = await hits(click="add item")  # by the button's text
        by_selector = await hits(click="#add-item")
        assert typed and visited and clicked and by_selector
        assert clicked[0]["value"] == "#add-item" and clicked[0]["text"] == "Add item"
        assert visited[0]["value"] == form_page
        for hit in (*typed, *visited, *clicked):
            assert 0 <= hit["offset_ms"] <= info["duration_ms"], hit
        # The click came before the form was visited, the typing after.
        assert clicked[0]["ts"] <= visited[0]["ts"] <= typed[0]["ts"]
        assert await hits(text="hunter2secret") == []
        across = await client.search(text="Ada Lovelace")
        assert sid in {h["recording_id"] for h in across["hits"]}
        with pytest.raises(ApiError) as nothing:
            await client.search()
        assert nothing.value.status == 422 and "what to search for" in nothing.value.message
    finally:
        await client.delete_recording(sid)
    gone = await client.search(text="Ada Lovelace")
    assert sid not in {h["recording_id"] for h in gone["hits"]}


async def test_what_happens_just_before_a_link_is_followed_is_recorded(client,
                                                                        demo_site) -> None:
    """The last batch of a page that is left by a click on a link: the value rrweb records
    as the input loses focus, and the click itself. Several sessions, as a lost batch
    depends on how the navigation races the page's flush."""
    form_page = f"{demo_site.url}/form.html"
    sids = [(await client.create_session(form_page, close_when_done=True, steps=[
        {"action": "fill", "selector": "#name", "value": f"Grace {n}"},
        {"action": "click", "selector": "#nav-list"},
        {"action": "wait_for", "selector": "#add-item"},
        {"action": "wait", "ms": 300}]))["id"] for n in range(3)]
    try:
        for n, sid in enumerate(sids):
            await client.wait_for_state(sid, {"stopped"}, 90)
            deadline = time.monotonic() + 30
            while (await client.recording(sid)).get("ended_at") is None:
                assert time.monotonic() < deadline, "the recording never finished"
                await asyncio.sleep(0.25)
            events = await client.recording_events(sid)
            metas = [i for i, e in enumerate(events) if e["type"] == EventType.META]
            lists = [i for i in metas if events[i]["data"]["href"].endswith("/list.html")]
            assert lists, f"session {n}: the list page was never recorded"
            on_form = events[:lists[0]]
            typed = [e for e in on_form if e["type"] == EventType.INCREMENTAL_SNAPSHOT
                     and e["data"].get("source") == 5 and e["data"].get("text") == f"Grace {n}"]
            clicks = [e for e in on_form if e["type"] == EventType.INCREMENTAL_SNAPSHOT
                      and e["data"].get("source") == 2 and e["data"].get("type") == 2]
            assert typed, f"session {n}: the typed name is not in the form page's recording"
            assert clicks, f"session {n}: the click on the link is not in the recording"
    finally:
        for sid in sids:
            await client.delete_recording(sid)
