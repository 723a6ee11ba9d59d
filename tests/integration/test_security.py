"""Access control through the real gateway: `rrstream up` with auth required, and the
project's own client (REST and protocol v1) as a user's program would use it.

A stack of its own (a second embedded Ray, in a process of its own) with small limits,
so that each rule can be hit without disturbing the tests of the shared stack.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from serve.cli import main
from serve.client import ApiError, Client, ConnectFailed, StreamClosed
from tests.integration.secure_stack import (
    BURST_KEY,
    CREATIONS_PER_MINUTE,
    KEY,
    MAX_VIEWERS,
    SecureStack,
    running_demo,
    secure_stack,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack_with_auth() -> Iterator[SecureStack]:
    with secure_stack() as stack:
        assert "auth:           required" in stack.output, stack.output
        assert KEY not in stack.output  # a key of the operator's own is never printed
        yield stack


@pytest.fixture
async def client(stack_with_auth: SecureStack) -> AsyncIterator[Client]:
    async with Client(stack_with_auth.base_url, api_key=KEY) as rrstream:
        yield rrstream


@pytest.fixture
async def demo(client: Client) -> AsyncIterator[dict]:
    async with running_demo(client) as info:
        yield info


async def test_rest_calls_without_a_key_get_401_with_the_json_body(stack_with_auth) -> None:
    async with httpx.AsyncClient(base_url=stack_with_auth.base_url, timeout=30) as http:
        calls = [("POST", "/sessions", {"demo": True}), ("GET", "/sessions", None),
                 ("GET", "/recordings", None), ("GET", "/pool", None),
                 ("POST", "/demo/start", None), ("GET", "/sessions/x", None),
                 ("POST", "/sessions/x/viewer-links", {}),
                 ("POST", "/recordings/x/viewer-links", {})]
        for method, path, body in calls:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}):
                answer = await http.request(method, path, json=body, headers=headers)
                assert answer.status_code == 401, (method, path, headers, answer.text)
                assert "API key" in answer.json()["message"]
                assert answer.headers["www-authenticate"].startswith("Bearer")
        for path in ("/healthz", "/readyz", "/", "/openapi.json", "/docs"):
            assert (await http.get(path)).status_code == 200, path
        assert (await http.get("/sessions", headers={"X-API-Key": KEY})).status_code == 200


async def test_a_view_link_opens_the_stream_and_nothing_else(client: Client, demo) -> None:
    link = demo["view_link"]
    assert link["url"] == f"{client.base_url}/?session={demo['id']}#token={link['token']}"
    assert link["role"] == "view" and link["expires_at"] > time.time() + 3_000
    async with client.viewer(demo["id"], token=link["token"]) as viewer:
        await viewer.wait_for(lambda f: f.full_snapshot, 30)
    refusals = {
        None: (4401, "a viewer token is required"),
        link["token"][:-6] + "AAAAAA": (4401, "signature is not ours"),
        "%%%": (4401, "malformed"),
    }
    for token, (code, reason) in refusals.items():
        with pytest.raises(StreamClosed) as closed:
            await client.viewer(demo["id"], token=token).connect()
        assert (closed.value.code, reason in closed.value.reason) == (code, True), token
    other = await client.start_demo(idle_timeout_s=0)
    try:
        with pytest.raises(StreamClosed) as closed:
            await client.viewer(other["id"], token=link["token"]).connect()
        assert closed.value.code == 4403 and f"not session {other['id']}" in closed.value.reason
    finally:
        await client.stop_session(other["id"])


async def test_a_recording_is_read_with_a_key_or_a_link_of_its_own(
        client: Client, stack_with_auth, demo) -> None:
    """GET /recordings/{id}/events: an API key, a replay link's token of that recording,
    or its session's view token (a viewer opened by a link rewinds the live session)."""
    sid = demo["id"]
    await client.wait_for_session(sid, lambda s: s["events"] > 0, 60)
    replay_token = (await client.recording_link(sid))["token"]
    view_token = demo["view_link"]["token"]
    path = f"/recordings/{sid}/events"
    async with httpx.AsyncClient(base_url=stack_with_auth.base_url, timeout=30) as http:
        for headers in ({"X-API-Key": KEY}, {"Authorization": f"Bearer {replay_token}"},
                        {"Authorization": f"Bearer {view_token}"}):
            answer = await http.get(path, headers=headers)
            assert answer.status_code == 200, (headers, answer.text)
            assert isinstance(answer.json(), list)
            # Its metadata and its search too (a viewer opened by a link names it, finds).
            assert (await http.get(f"/recordings/{sid}", headers=headers)).status_code == 200
            found = await http.get(f"/recordings/{sid}/search?text=Acme", headers=headers)
            assert found.status_code == 200, found.text
        refused = {
            None: (401, "an API key or a viewer token is required"),
            replay_token[:-6] + "AAAAAA": (401, "signature is not ours"),
            "wrong": (401, "that API key is not valid"),
        }
        for token, (status, words) in refused.items():
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            answer = await http.get(path, headers=headers)
            assert answer.status_code == status and words in answer.json()["message"], token
        other = await http.get("/recordings/someother/events",
                               headers={"Authorization": f"Bearer {replay_token}"})
        assert other.status_code == 403
        assert "not recording someother" in other.json()["message"]


async def test_a_foreign_origin_is_refused_and_our_own_admitted(client: Client, demo) -> None:
    token = demo["view_link"]["token"]
    foreign = client.viewer(demo["id"], token=token, headers={"Origin": "http://evil.test"})
    with pytest.raises(ConnectFailed, match="403"):
        await foreign.connect()
    own = client.viewer(demo["id"], token=token,
                        headers={"Origin": client.base_url})
    async with own:
        await own.wait_for(lambda f: f.full_snapshot, 30)


async def test_revoking_closes_open_sockets_within_5_s_and_new_links_work(client: Client,
                                                                          demo) -> None:
    viewer = client.viewer(demo["id"], token=demo["view_link"]["token"])
    connection = await viewer.connect()
    try:
        await client.revoke_viewer_links(demo["id"])
        revoked = time.monotonic()
        with pytest.raises(StreamClosed) as closed:
            while True:
                await connection.receive(10)
        assert time.monotonic() - revoked < 5
        assert (closed.value.code, closed.value.reason) == (4401, "the viewer link was revoked")
    finally:
        await connection.close()
    with pytest.raises(StreamClosed) as closed:
        await client.viewer(demo["id"], token=demo["view_link"]["token"]).connect()
    assert closed.value.code == 4401
    fresh = await client.viewer_link(demo["id"], label="after revoke")
    async with client.viewer(demo["id"], token=fresh["token"]) as watcher:
        await watcher.wait_for(lambda f: f.full_snapshot, 30)


async def test_a_socket_closes_when_its_token_expires(client: Client, demo) -> None:
    short = await client.viewer_link(demo["id"], ttl_s=2)
    connection = await client.viewer(demo["id"], token=short["token"]).connect()
    try:
        with pytest.raises(StreamClosed) as closed:
            while True:
                await connection.receive(10)
        assert (closed.value.code, closed.value.reason) == (4401, "the viewer token has expired")
        assert time.time() >= short["expires_at"] - 0.5
    finally:
        await connection.close()
    with pytest.raises(ApiError) as refused:
        await client.viewer_link(demo["id"], ttl_s=10**7)
    assert refused.value.status == 422 and "ttl_s may be at most" in refused.value.message


async def test_viewers_per_session_are_limited_with_1013(client: Client, demo) -> None:
    token = demo["view_link"]["token"]
    connections = []
    try:
        for _ in range(MAX_VIEWERS):
            connections.append(await client.viewer(demo["id"], token=token).connect())
        with pytest.raises(StreamClosed) as closed:
            await client.viewer(demo["id"], token=token).connect()
        assert closed.value.code == 1013
        assert f"maximum of {MAX_VIEWERS} viewers" in closed.value.reason
    finally:
        await asyncio.gather(*(c.close() for c in connections))


async def test_session_creations_per_key_answer_429_with_retry_after(stack_with_auth) -> None:
    async with Client(stack_with_auth.base_url, api_key=BURST_KEY) as burst:
        created = []
        try:
            for _ in range(CREATIONS_PER_MINUTE):
                created.append(await burst.start_demo(idle_timeout_s=0))
            with pytest.raises(ApiError) as refused:
                await burst.start_demo(idle_timeout_s=0)
            assert refused.value.status == 429
            assert "RRSTREAM_LIMIT_SESSION_CREATIONS" in refused.value.message
        finally:
            for info in created:
                await burst.stop_session(info["id"])
    async with httpx.AsyncClient(base_url=stack_with_auth.base_url) as http:
        answer = await http.post("/demo/start", headers={"X-API-Key": BURST_KEY})
        assert answer.status_code == 429 and 1 <= int(answer.headers["retry-after"]) <= 60


def test_the_cli_takes_the_api_key(stack_with_auth, capsys) -> None:
    gateway = ["session", "--gateway", stack_with_auth.base_url]
    assert main([*gateway, "list"]) == 1
    assert "HTTP 401" in capsys.readouterr().err
    assert main([*gateway, "--api-key", KEY, "list"]) == 0
    assert main(["status", "--gateway", stack_with_auth.base_url, "--api-key", KEY]) == 0
