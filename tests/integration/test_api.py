"""The REST and WebSocket API through a real Ray Serve gateway, real actors, real Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from collections.abc import Callable

import orjson
import psutil
import pytest
import ray
import websockets

from pipeline.protocol import End
from serve.client import Connection, StreamClosed, Viewer
from tests.conftest import wait_for_state


async def read_until(conn: Connection, until: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Applies what arrives until `until()` holds. The client checks each frame: a gap or a
    duplicate raises SequenceGap, a frame whose events are not its header's count BadFrame."""
    async with asyncio.timeout(timeout_s):
        while not until():
            await conn.receive()


async def test_session_lifecycle_and_named_actors(api, stack, demo_site) -> None:
    response = await api.post("/sessions", json={
        "url": f"{demo_site.url}/list.html", "name": "lifecycle",
        "steps": [{"action": "click", "selector": "#add-item"}, {"action": "wait", "ms": 200}]})
    assert response.status_code == 201, response.text
    info = response.json()
    sid = info["id"]
    assert info["viewer_url"] == f"{stack.base_url}/?session={sid}"
    assert info["stream_url"] == f"{stack.ws_url}/sessions/{sid}/stream"

    info = await wait_for_state(api, sid, {"idle"})
    assert info["url"].endswith("/list.html") and info["started_at"]
    assert [s["state"] for s in info["steps"]] == ["done", "done"]
    assert info["events"] > 0 and info["bytes_compressed"] > 0 and info["node_id"]

    namespace = stack.settings.namespace
    assert ray.get_actor(f"session:{sid}", namespace=namespace)
    # The node's sessions share its streamer and its Chromium.
    assert ray.get_actor(f"streamer:{info['node_id']}", namespace=namespace)
    assert ray.get_actor(f"browser:{info['node_id']}", namespace=namespace)
    assert sid in {s["id"] for s in (await api.get("/sessions")).json()}

    stopped = (await api.delete(f"/sessions/{sid}")).json()
    assert stopped["state"] == "stopped" and stopped["ended_at"]
    again = await api.delete(f"/sessions/{sid}")
    assert again.status_code == 200 and again.json()["state"] == "stopped"


async def test_ray_runs_on_loopback(stack) -> None:
    addresses = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    assert addresses and all(ipaddress.ip_address(a).is_loopback for a in addresses), addresses


async def test_data_path_runs_at_normal_priority(api, demo_site) -> None:
    """Ray starts workers at nice 15 unless told otherwise (serve.app.ray_environment);
    every process a stream passes through is a worker or its child."""
    sid = (await api.post("/sessions", json={"url": f"{demo_site.url}/index.html"})).json()["id"]
    try:
        await wait_for_state(api, sid, {"idle"})
        nice: dict[str, list[int]] = {}
        for proc in psutil.Process().children(recursive=True):  # the embedded Ray's
            with contextlib.suppress(psutil.Error):
                title = (proc.cmdline() or [""])[0]
                for kind in ("ray::BrowserSessionActor", "ray::StreamerActor",
                             "ray::ServeReplica:rrstream:Gateway", "playwright/driver/node"):
                    if title.startswith(kind) or title.endswith(kind):
                        nice.setdefault(kind, []).append(proc.nice())
        assert len(nice) == 4, nice
        assert all(n == 0 for values in nice.values() for n in values), nice
    finally:
        await api.delete(f"/sessions/{sid}")


async def test_a_session_stopped_while_starting_ends_stopped(api, demo_site) -> None:
    """DELETE at staggered moments of a start: always `stopped`, never `failed`. (A stop
    between placing and connecting, which the first session on a node makes wide while
    its streamer starts, used to end `failed` with InvalidTransition.)"""

    async def start_then_stop(delay_s: float) -> dict:
        sid = (await api.post("/sessions", json={"url": f"{demo_site.url}/"})).json()["id"]
        await asyncio.sleep(delay_s)
        await api.delete(f"/sessions/{sid}")
        return await wait_for_state(api, sid, {"stopped", "failed"})

    ended = await asyncio.gather(*(start_then_stop(i * 0.04) for i in range(8)))
    assert [(s["state"], s["error"]) for s in ended] == [("stopped", None)] * 8, ended


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "ftp://example.com"}, "body.url"),
    ({"url": "javascript:alert(1)"}, "body.url"),
    ({"url": "http://a.test", "steps": [{"action": "click"}]}, "body.steps.0.click.selector"),
    ({"url": "http://a.test", "steps": [{"action": "fly"}]}, "body.steps.0"),
    ({"url": "http://a.test", "steps": "click everything"}, "body.steps"),
])
async def test_bad_input_is_422_naming_the_field(api, body, field) -> None:
    response = await api.post("/sessions", json=body)
    assert response.status_code == 422
    assert field in response.json()["message"]


async def test_unknown_session_is_404(api) -> None:
    for method, path in (("GET", "/sessions/nope"), ("DELETE", "/sessions/nope"),
                         ("GET", "/demo/status/nope"), ("POST", "/demo/stop/nope")):
        response = await api.request(method, path)
        assert response.status_code == 404, path
        assert response.json()["message"] == "no session with id 'nope'"


async def test_websocket_refuses_unknown_sessions_and_bad_hellos(api, stack, demo_site) -> None:
    async with websockets.connect(f"{stack.ws_url}/sessions/nope/stream") as ws:
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["code"] == 4404
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4404
    assert closed.value.rcvd.reason == "no session with id 'nope'"

    sid = (await api.post("/sessions", json={"url": f"{demo_site.url}/"})).json()["id"]
    good = json.dumps({"type": "hello", "protocol": 1})
    cases = {
        "not json": ["not json"],
        "protocol 99": [json.dumps({"type": "hello", "protocol": 99})],
        "binary hello": [good.encode()],
        "a second hello": [good, good],
        "a bad ack": [good, json.dumps({"type": "ack", "seq": "many"})],
    }
    for case, messages in cases.items():
        async with websockets.connect(f"{stack.ws_url}/sessions/{sid}/stream") as ws:
            for message in messages:
                await ws.send(message)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None, case
        assert closed.value.rcvd.code == 4400, (case, closed.value.rcvd)
        assert closed.value.rcvd.reason, case

    async with websockets.connect(f"{stack.ws_url}/sessions/{sid}/stream") as ws:
        error = json.loads(await ws.recv())  # says nothing: the hello timeout (2 s here)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert error["code"] == 4408 and closed.value.rcvd.code == 4408
    assert closed.value.rcvd.reason == "no hello within 2 s"
    await api.delete(f"/sessions/{sid}")


async def test_frames_are_not_deflated_again_in_the_socket(stack) -> None:
    # Offered permessage-deflate, as every browser does, the gateway declines it: frames
    # are compressed once by the streamer, not again for each viewer.
    async with websockets.connect(f"{stack.ws_url}/sessions/nope/stream",
                                  compression="deflate") as ws:
        assert "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        assert ws.protocol.extensions == []


async def test_stream_delivers_the_page_in_order_to_several_viewers(api, client, stack,
                                                                    demo_site):
    sid = (await api.post("/sessions", json={
        "url": f"{demo_site.url}/list.html",
        "steps": [{"action": "click", "selector": "#add-item"}] * 3 + [
            {"action": "wait", "ms": 1500}],
    })).json()["id"]

    async def watch() -> list[dict]:
        viewer = client.viewer(sid)
        async with await viewer.connect() as conn:
            assert conn.welcome is not None and conn.welcome.codec == stack.settings.codec
            await read_until(conn, lambda: "Item 3" in orjson.dumps(viewer.events()).decode())
        return viewer.events()

    first, second = await asyncio.gather(watch(), watch())
    for events in (first, second):
        types = [e["type"] for e in events]
        assert 4 in types and 2 in types
        assert types.index(4) < types.index(2), "Meta must precede the FullSnapshot"
    await api.delete(f"/sessions/{sid}")


async def test_resume_continues_without_gap_and_end_closes_1000(api, client, demo_site):
    sid = (await api.post("/sessions", json={"url": f"{demo_site.url}/list.html"})).json()["id"]
    first = client.viewer(sid)
    async with await first.connect() as conn:
        await read_until(conn, lambda: sum(e["type"] == 3 for e in first.events()) >= 3)
    viewer = client.viewer(sid)
    async with await viewer.connect() as conn:
        await conn.next_frame(30)
    seen_last = viewer.last_seq
    assert first.events() and seen_last is not None
    conn = await viewer.connect()  # says hello with resume_after: seen_last
    assert conn.welcome is not None and conn.welcome.resume == "continue"
    frame = await conn.next_frame(30)
    assert frame.header.first_seq == seen_last + 1 and not frame.header.reset
    await api.delete(f"/sessions/{sid}")
    with pytest.raises(StreamClosed) as closed:
        async with asyncio.timeout(30):
            while True:
                message = await conn.receive()
                if isinstance(message, End):
                    assert message.reason == "stopped"
    assert closed.value.code == 1000 and viewer.end is not None


async def test_seed_demo_endpoints(api, stack) -> None:
    started = (await api.post("/demo/start")).json()
    sid = started["id"]
    assert started["name"] == "demo"
    info = await wait_for_state(api, sid, {"running", "idle"})
    assert info["start_url"].startswith("http://127.0.0.1:")
    assert (await api.get(f"/demo/status/{sid}")).json()["id"] == sid
    viewer = Viewer(f"{stack.ws_url}/demo/stream?session_id={sid}")
    async with await viewer.connect() as conn:
        assert conn.welcome is not None and conn.welcome.session_id == sid
        await read_until(conn, lambda: any(e["type"] == 2 for e in viewer.events()))
    async with await Viewer(f"{stack.ws_url}/demo/stream").connect() as conn:
        assert conn.welcome is not None
        assert conn.welcome.session_id == sid  # the newest live demo session
    assert (await api.post(f"/demo/stop/{sid}")).json()["state"] == "stopped"


async def test_viewer_page_and_api_docs_are_served(api) -> None:
    index = await api.get("/")
    assert index.status_code == 200 and "static/viewer.js" in index.text
    assert (await api.get("/static/viewer.js")).status_code == 200
    assert (await api.get("/openapi.json")).json()["info"]["title"] == "rrstream"
