"""The protocol client (serve/client) against real servers in this process, no Ray.

The WebSocket side is a websockets server on a free loopback port that speaks protocol v1
from a script per connection, with frames the real streamer made (pipeline.stream
SessionStream numbers and compresses, pipeline.protocol.encode_frame frames), in both
codecs. The REST side is a small FastAPI app served by uvicorn on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from pipeline.config import Settings
from pipeline.protocol import Chunk, End, PageBatch, Reset, Status, Welcome, encode_frame
from pipeline.recording_store import RecordingStore
from pipeline.stream import SessionStream, first_seq
from serve.client import (
    ApiError,
    BadFrame,
    Client,
    ConnectFailed,
    EventType,
    Frame,
    GatewayUnreachable,
    SequenceGap,
    StreamClosed,
    Viewer,
    ViewerState,
    stored_frames,
)
from tests.conftest import free_port

CODECS = ["deflate-raw", "lz4-frame"]
SID = "s1"
pytestmark = pytest.mark.timeout(30)


def page_batch(i: int, checkout: bool) -> PageBatch:
    if checkout:
        text = (f'[{{"type":4,"data":{{"href":"http://a.test/{i}"}},"timestamp":{i}}},'
                f'{{"type":2,"data":{{"node":{{"type":0,"childNodes":[]}}}},"timestamp":{i}}}]')
        return PageBatch(True, 2, float(i), float(i), text)
    text = f'[{{"type":3,"data":{{"i":{i}}},"timestamp":{i}}}]'
    return PageBatch(False, 1, float(i), float(i), text)


class Pages:
    """One session's stream as the streamer makes it: a checkout every `every` batches."""

    def __init__(self, codec: str, epoch: int = 0, every: int = 4) -> None:
        self.stream = SessionStream(SID, Settings(codec=codec), epoch)
        self.codec = codec
        self.every = every
        self.pushed = 0

    async def push(self, n: int) -> list[Chunk]:
        start = self.stream.stats().last_seq
        batches = []
        for _ in range(n):
            batches.append(page_batch(self.pushed, self.pushed % self.every == 0))
            self.pushed += 1
        await self.stream.push(batches)
        return (await self.stream.read(start, 0)).chunks


Script = Callable[[ServerConnection, dict[str, Any], "Gateway"], Awaitable[None]]


class Gateway:
    """A protocol v1 server whose n-th connection runs the n-th script (the last repeats).
    It records every hello and ack it gets."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = list(scripts)
        self.hellos: list[dict[str, Any]] = []
        self.acks: list[tuple[float, int]] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/sessions/{SID}/stream"

    async def handler(self, ws: ServerConnection) -> None:
        script = self.scripts[min(len(self.hellos), len(self.scripts) - 1)]
        hello = json.loads(await ws.recv())
        self.hellos.append(hello)
        reader = asyncio.create_task(self._read(ws))
        try:
            await script(ws, hello, self)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                parsed = json.loads(message)
                assert parsed["type"] == "ack", parsed
                self.acks.append((time.monotonic(), parsed["seq"]))


@contextlib.asynccontextmanager
async def running(gateway: Gateway) -> AsyncIterator[Gateway]:
    async with serve(gateway.handler, "127.0.0.1", 0) as server:
        gateway.port = server.sockets[0].getsockname()[1]
        yield gateway


async def welcome(ws: ServerConnection, codec: str, resume: str = "reset") -> None:
    await ws.send(Welcome(session_id=SID, codec=codec, resume=resume,  # type: ignore[arg-type]
                          state="running").model_dump_json())


async def frames(ws: ServerConnection, chunks: list[Chunk], reset: str | None = None) -> None:
    """Sends chunks as the gateway does: one frame per segment, the first one RESET after a
    `reset` message when `reset` names a reason."""
    groups: list[list[Chunk]] = []
    for chunk in chunks:
        if chunk.segment_start or not groups:
            groups.append([])
        groups[-1].append(chunk)
    for index, group in enumerate(groups):
        if index == 0 and reset is not None:
            await ws.send(Reset(reason=reset, seq=group[0].seq).model_dump_json())  # type: ignore[arg-type]
        await ws.send(encode_frame(SID, group, reset=index == 0 and reset is not None))


async def end_stream(ws: ServerConnection) -> None:
    await ws.send(End(reason="stopped", state="stopped").model_dump_json())
    await ws.close(1000, "session stopped")


def applied(viewer: Viewer) -> list[int]:
    return [seq for frame in viewer.frames for seq, _ in frame.batches]


# -- hello, welcome, decoding, acks --------------------------------------------------------------

@pytest.mark.parametrize("codec", CODECS)
async def test_hello_welcome_and_both_codecs_decode(codec: str) -> None:
    pages = Pages(codec)
    chunks = await pages.push(10)

    async def script(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await ws.send(Status(state="pending").model_dump_json())
        await welcome(ws, codec)
        await frames(ws, chunks, reset="join")
        await end_stream(ws)

    async with running(Gateway(script)) as gw:
        viewer = Viewer(gw.url)
        await viewer.run()

    assert gw.hellos == [{"type": "hello", "protocol": 1, "resume_after": None, "token": None,
                          "acks": True, "skips": True}]
    assert viewer.welcome == Welcome(session_id=SID, codec=codec, resume="reset", state="running")
    assert [type(m).__name__ for m in viewer.controls] == ["Status", "Welcome", "Reset", "End"]
    assert applied(viewer) == list(range(1, 11)) and viewer.last_seq == 10
    assert viewer.frames[0].header.reset and viewer.frames[0].reset_reason == "join"
    assert [f.header.segment_start for f in viewer.frames] == [True, True, True]
    assert [e["timestamp"] for e in viewer.events()] == [
        t for i in range(10) for t in ([i, i] if i % 4 == 0 else [i])]
    assert viewer.frames[0].full_snapshot and not viewer.frames[0].has_event(EventType.CUSTOM)
    assert viewer.stats.events == sum(c.event_count for c in chunks)
    assert (viewer.end, viewer.close_code, viewer.close_reason) == (
        End(reason="stopped", state="stopped"), 1000, "session stopped")
    assert viewer.state is ViewerState.CLOSED and viewer.gaps == [] and not viewer.reconnects


async def test_a_skipped_frame_advances_the_sequence_and_decodes_nothing() -> None:
    stream = SessionStream(SID, Settings(codec="deflate-raw"))

    def picture(i: int) -> PageBatch:
        text = f'[{{"type":3,"data":{{"source":9,"id":5,"webp":"{"QUJD" * 50}{i}"}}}}]'
        return PageBatch(False, 1, float(i), float(i), text, len(text) - 2, picture_of=5)

    await stream.push([page_batch(0, True), picture(1), page_batch(2, False), picture(3),
                       picture(4), page_batch(5, False)])
    chunks = (await stream.read(0, 0)).chunks

    async def script(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await welcome(ws, "deflate-raw")
        await ws.send(Reset(reason="join", seq=1).model_dump_json())
        await ws.send(encode_frame(SID, chunks[:3], reset=True))
        await ws.send(encode_frame(SID, chunks[3:4], skipped=True))  # 4: superseded by 5
        await ws.send(encode_frame(SID, chunks[4:]))
        await end_stream(ws)

    async with running(Gateway(script)) as gw:
        viewer = Viewer(gw.url, on_gap="raise")
        await viewer.run()
    assert gw.hellos[0]["skips"] is True
    assert [f.skipped for f in viewer.frames] == [False, True, False]
    assert applied(viewer) == [1, 2, 3, 5, 6] and viewer.last_seq == 6
    assert viewer.stats.skipped_frames == 1 and viewer.stats.batches == 6
    assert [e["data"].get("webp", "")[-1:] for e in viewer.events()[2:]] == ["1", "", "4", ""]
    assert viewer.frames[1].events == [] and viewer.gaps == []


async def test_a_viewer_can_decline_skipped_frames() -> None:
    async def script(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await welcome(ws, "deflate-raw")
        await end_stream(ws)

    async with running(Gateway(script)) as gw:
        await Viewer(gw.url, skips=False).run()
    assert "skips" not in gw.hellos[0], "the hello of a gateway that knows no skips"


async def test_acks_go_out_after_half_a_second_or_a_mebibyte() -> None:
    pages = Pages("deflate-raw")
    burst = await pages.push(20)
    big = await pages.push(3)

    def script(pause_s: float) -> Script:
        async def run(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
            await welcome(ws, "deflate-raw")
            await frames(ws, burst, reset="join")  # 5 frames at once: one ack for them all
            await asyncio.sleep(pause_s)
            await frames(ws, big)
            await asyncio.sleep(pause_s)
            await end_stream(ws)
        return run

    async with running(Gateway(script(0.7))) as gw:
        started = time.monotonic()
        timed = Viewer(gw.url)
        await timed.run()
        assert [seq for _, seq in gw.acks] == [20, 23]
        assert 0.4 <= gw.acks[0][0] - started <= 0.75, gw.acks
        assert timed.acked_seq == 23 and timed.stats.acks_sent == 2

        gw.acks.clear()
        gw.scripts = [script(0.05)]
        by_bytes = Viewer(gw.url, ack_bytes=1)  # every frame crosses the threshold
        await by_bytes.run()
        assert [seq for _, seq in gw.acks] == [4, 8, 12, 16, 20, 23]

        gw.acks.clear()
        await Viewer(gw.url, acks=False).run()
        assert gw.acks == [] and gw.hellos[-1]["acks"] is False


# -- resume, resets, gaps ------------------------------------------------------------------------

@pytest.mark.parametrize("codec", CODECS)
async def test_after_an_abrupt_drop_it_resumes_where_it_was(codec: str) -> None:
    pages = Pages(codec)
    first, rest = await pages.push(6), await pages.push(6)

    async def dropped(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await welcome(ws, codec)
        await frames(ws, first, reset="join")
        await asyncio.sleep(0.1)
        ws.transport.abort()  # the network died: no close frame

    async def resumed(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await welcome(ws, codec, resume="continue")
        await frames(ws, [c for c in first + rest if c.seq > hello["resume_after"]])
        await end_stream(ws)

    async with running(Gateway(dropped, resumed)) as gw:
        viewer = Viewer(gw.url, reconnect=True)
        await viewer.run()

    assert [h["resume_after"] for h in gw.hellos] == [None, 6]
    assert applied(viewer) == list(range(1, 13))  # each batch once, in order
    assert [f.connection for f in viewer.frames][-1] == 2 and viewer.stats.reset_frames == 1
    (reconnect,) = viewer.reconnects
    assert (reconnect.why, reconnect.resume, reconnect.attempts) == ("connection lost",
                                                                     "continue", 1)
    assert 0 < reconnect.connected_at_ms - reconnect.lost_at_ms < 1000
    assert viewer.events()[-1]["data"] == {"i": 11}  # the codec context carried over


async def test_a_reset_message_and_frame_start_over_with_a_reason() -> None:
    old, new = Pages("deflate-raw"), Pages("deflate-raw", epoch=1)
    before = await old.push(6)
    await old.push(6)  # the viewer misses these
    skipped_to = (await old.push(5))[:4]  # a checkout (seq 13) and what follows
    restarted = await new.push(5)

    async def script(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await welcome(ws, "deflate-raw")
        await frames(ws, before, reset="join")
        await frames(ws, skipped_to, reset="slow_viewer")  # moved forward
        await frames(ws, restarted, reset="restart")  # a new epoch of numbering
        await end_stream(ws)

    async with running(Gateway(script)) as gw:
        viewer = Viewer(gw.url)
        await viewer.run()

    assert [r.reason for r in viewer.resets] == ["join", "slow_viewer", "restart"]
    assert [(f.header.first_seq, f.reset_reason) for f in viewer.frames if f.header.reset] == [
        (1, "join"), (13, "slow_viewer"), (first_seq(1), "restart")]
    assert viewer.gaps == [] and viewer.connections == 1
    assert viewer.last_seq == first_seq(1) + 4


async def test_a_gap_is_counted_then_the_viewer_joins_again_from_scratch() -> None:
    pages = Pages("lz4-frame")
    chunks = await pages.push(8)

    async def gapped(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await welcome(ws, "lz4-frame")
        await frames(ws, chunks[:3], reset="join")
        await ws.send(encode_frame(SID, [chunks[4]]))  # batch 4 never came
        await ws.wait_closed()

    async def joined(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await welcome(ws, "lz4-frame")
        await frames(ws, chunks[4:], reset="join")
        await end_stream(ws)

    async with running(Gateway(gapped, joined)) as gw:
        viewer = Viewer(gw.url)  # no `reconnect`: a gap is the protocol's own restart
        await viewer.run()
        assert [h["resume_after"] for h in gw.hellos] == [None, None]
        assert [(g.expected, g.got) for g in viewer.gaps] == [(4, 5)]
        assert viewer.reconnects[0].why == "gap in the stream: expected batch 4, got batch 5"
        assert viewer.reconnects[0].resume == "reset"
        assert applied(viewer) == [1, 2, 3, 5, 6, 7, 8]
        assert viewer.frames[-2].header.reset and viewer.frames[-2].reset_reason == "join"

        strict = Viewer(gw.url, on_gap="raise")
        gw.hellos.clear()
        gw.scripts = [gapped]
        with pytest.raises(SequenceGap, match="expected batch 4, got batch 5"):
            await strict.run()
        assert strict.close_code == 4000 and strict.connections == 1


async def test_a_fresh_viewer_needs_a_reset_frame_first() -> None:
    chunks = await Pages("deflate-raw").push(4)

    async def script(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await welcome(ws, "deflate-raw")
        await ws.send(encode_frame(SID, chunks[:2]))  # a segment start, but no RESET
        await ws.wait_closed()

    async with running(Gateway(script)) as gw:
        with pytest.raises(SequenceGap, match="expected a RESET frame, got batch 1"):
            await Viewer(gw.url, on_gap="raise").run()


async def test_a_frame_that_does_not_decode_is_a_bad_frame() -> None:
    chunks = await Pages("deflate-raw").push(3)
    broken = Chunk(2, False, 1, 2.0, 2.0, 2.0, b"\xff\xfe not deflate")

    async def script(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await welcome(ws, "deflate-raw")
        await frames(ws, chunks[:1], reset="join")
        await ws.send(encode_frame(SID, [broken]))
        await ws.wait_closed()

    async with running(Gateway(script)) as gw:
        viewer = Viewer(gw.url, on_gap="raise")
        with pytest.raises(BadFrame, match="does not decode as deflate-raw"):
            await viewer.run()
        assert viewer.stats.bad_frames == 1 and viewer.last_seq is None


# -- closes and reconnects -----------------------------------------------------------------------

@pytest.mark.parametrize("code", [4400, 4401, 4403, 4404])
async def test_no_reconnect_after_a_final_close_code(code: int) -> None:
    async def refuse(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await ws.send(json.dumps({"type": "error", "code": code, "message": "refused"}))
        await ws.close(code, f"refused with {code}")

    async with running(Gateway(refuse)) as gw:
        viewer = Viewer(gw.url, reconnect=True)
        with pytest.raises(StreamClosed) as closed:
            await viewer.run()
    assert (closed.value.code, closed.value.reason) == (code, f"refused with {code}")
    assert (viewer.close_code, viewer.close_reason) == (code, f"refused with {code}")
    assert viewer.errors[0].code == code and len(gw.hellos) == 1 and viewer.welcome is None


async def test_an_unknown_id_refused_before_hello_is_kept() -> None:
    async def handler(ws: ServerConnection) -> None:  # the gateway refuses before reading
        await ws.send(json.dumps({"type": "error", "code": 4404, "message": "no session"}))
        await ws.close(4404, "no session with id 'nope'")

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        viewer = Viewer(f"ws://127.0.0.1:{port}/sessions/nope/stream", reconnect=True)
        with pytest.raises(StreamClosed, match="no session with id 'nope'"):
            await viewer.run()
    assert viewer.close_code == 4404 and viewer.connections == 1


@pytest.mark.parametrize("code", [1011, 1012, None])
async def test_reconnects_after_an_abnormal_close_only_when_asked(code: int | None) -> None:
    pages = Pages("deflate-raw")
    chunks = await pages.push(4)

    async def dies(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await welcome(ws, "deflate-raw")
        await frames(ws, chunks, reset="join")
        if code is None:
            ws.transport.abort()
        else:
            await ws.close(code, "replica going away")

    async def ends(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await welcome(ws, "deflate-raw", resume="continue")
        await end_stream(ws)

    async with running(Gateway(dies, ends)) as gw:
        staying = Viewer(gw.url, reconnect=True)
        await staying.run()
        assert staying.connections == 2 and staying.close_code == 1000
        assert staying.reconnects[0].why == ("connection lost" if code is None else
                                             f"closed with {code}: replica going away")

        gw.hellos.clear()
        leaving = Viewer(gw.url)
        with pytest.raises(StreamClosed) as closed:
            await leaving.run()
        assert closed.value.code == (code or 1006) and leaving.connections == 1


async def test_it_keeps_trying_while_nothing_listens_then_comes_back() -> None:
    port = free_port()
    viewer = Viewer(f"ws://127.0.0.1:{port}/sessions/{SID}/stream", reconnect=True,
                    backoff_s=(0.05, 0.2))
    chunks = await Pages("deflate-raw").push(4)

    async def script(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await welcome(ws, "deflate-raw")
        await frames(ws, chunks, reset="join")
        await ws.wait_closed()

    viewer.start()
    await viewer.wait_until(lambda: viewer.state is ViewerState.RECONNECTING, 5)
    assert "cannot open" in (viewer.error or "")
    gateway = Gateway(script)
    async with serve(gateway.handler, "127.0.0.1", port):
        frame = await viewer.wait_for(lambda f: f.full_snapshot, 5)
        await viewer.stop()
    assert frame.header.first_seq == 1 and viewer.reconnects == []  # it never had a stream
    assert viewer.connections == 1 and viewer.close_code == 1000


async def test_without_reconnect_a_refused_connection_raises() -> None:
    viewer = Viewer(f"ws://127.0.0.1:{free_port()}/sessions/{SID}/stream")
    with pytest.raises(ConnectFailed, match="cannot open ws://127.0.0.1"):
        await viewer.run()
    assert viewer.state is ViewerState.CLOSED


async def test_a_silent_stream_counts_as_lost() -> None:
    chunks = await Pages("deflate-raw").push(2)

    async def silent(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await welcome(ws, "deflate-raw")
        await frames(ws, chunks, reset="join")
        async with asyncio.timeout(5):  # a half-open connection: nothing, not even status
            await ws.wait_closed()

    async def ends(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await welcome(ws, "deflate-raw", resume="continue")
        await end_stream(ws)

    async with running(Gateway(silent, ends)) as gw:
        viewer = Viewer(gw.url, reconnect=True, idle_timeout_s=0.3)
        await viewer.run()
    assert viewer.reconnects[0].why == "nothing received for 0.3 s"
    assert [h["resume_after"] for h in gw.hellos] == [None, 2]


# -- waiting on a running viewer, and the manual connection ---------------------------------------

async def test_wait_for_a_frame_after_a_moment_and_stop() -> None:
    pages = Pages("deflate-raw", every=3)
    first, later = await pages.push(3), await pages.push(3)

    async def script(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        await welcome(ws, "deflate-raw")
        await frames(ws, first, reset="join")
        await asyncio.sleep(0.3)
        await frames(ws, later)
        await ws.wait_closed()

    async with running(Gateway(script)) as gw:
        async with Viewer(gw.url) as viewer:
            snapshot = await viewer.wait_for(lambda f: f.full_snapshot, 5)
            moment = time.time() * 1000.0
            after = await viewer.wait_for(lambda f: f.full_snapshot, 5, since_ms=moment)
            with pytest.raises(TimeoutError, match="no such frame within 0.2 s"):
                await viewer.wait_for(lambda f: f.header.first_seq > 99, 0.2)
        assert (snapshot.header.first_seq, after.header.first_seq) == (1, 4)
        assert after.arrival_ms is not None and after.arrival_ms >= moment
        assert viewer.close_code == 1000 and viewer.close_reason == "viewer left"
        with pytest.raises(StreamClosed):  # stopped: nothing more will come
            await viewer.wait_for(lambda f: False, 1)


async def test_a_manual_connection_resumes_on_the_next_connect() -> None:
    pages = Pages("lz4-frame")
    chunks = await pages.push(8)

    async def script(ws: ServerConnection, hello: dict[str, Any], gw: Gateway) -> None:
        after = hello["resume_after"]
        await welcome(ws, "lz4-frame", "reset" if after is None else "continue")
        await frames(ws, [c for c in chunks if after is None or c.seq > after],
                     reset="join" if after is None else None)
        await ws.wait_closed()

    async with running(Gateway(script)) as gw:
        viewer = Viewer(gw.url, max_queue=1)
        conn = await viewer.connect()
        frame = await conn.next_frame(5)
        assert isinstance(frame, Frame) and frame.batches[0][0] == 1
        conn.abort()
        conn = await viewer.connect()
        assert conn.welcome is not None and conn.welcome.resume == "continue"
        frame = await conn.next_frame(5)
        await conn.close()
        with pytest.raises(StreamClosed):
            await conn.receive(1)
    assert [h["resume_after"] for h in gw.hellos] == [None, 4]
    assert frame.header.first_seq == 5 and not frame.header.reset
    assert viewer.reconnects[0].why == "connection dropped by the viewer"


# -- stored recordings ---------------------------------------------------------------------------

@pytest.mark.parametrize("codec", CODECS)
async def test_stored_frames_decode_across_a_restart(tmp_path: Path, codec: str) -> None:
    store = RecordingStore(str(tmp_path))
    settings = Settings(codec=codec, recordings_url="")
    for epoch in (0, 1):  # a session restarted after its node was lost records on
        stream = SessionStream(SID, settings, epoch, recording=store.writer(SID, codec))
        pages = Pages(codec, epoch)
        pages.stream = stream
        await pages.push(6)
        stream.close()
        await stream.flush_recording(5.0)
    info = store.info(SID)
    frames_file = b"".join(store.chunk(SID, i) for i in range(info.chunks))
    read = list(stored_frames(frames_file, codec))
    assert [f.header.first_seq for f in read] == [*range(1, 7), *range(first_seq(1),
                                                                        first_seq(1) + 6)]
    assert read[6].header.segment_start and all(f.arrival_ms is None for f in read)
    assert sum(len(f.events) for f in read) == sum(f.header.event_count for f in read)


# -- REST ----------------------------------------------------------------------------------------

def rest_app() -> FastAPI:
    app = FastAPI()
    polls = {"n": 0}

    @app.post("/sessions", status_code=201)
    async def create(body: dict[str, Any]) -> Any:
        if not str(body.get("url", "")).startswith("http"):
            return JSONResponse(status_code=422, content={
                "message": "body.url: URL scheme should be 'http' or 'https'",
                "detail": [{"loc": ["body", "url"], "msg": "bad scheme"}]})
        return {"id": "abc", "state": "pending", "spec": body}

    @app.get("/sessions/{session_id}")
    async def get(session_id: str) -> Any:
        if session_id == "abc":
            polls["n"] += 1
            if polls["n"] == 2:  # the registry is away for a moment
                return JSONResponse(status_code=503, content={"message": "registry restarting"})
            return {"id": "abc", "state": "running" if polls["n"] >= 3 else "starting"}
        return JSONResponse(status_code=404,
                            content={"detail": f"no session with id {session_id!r}"})

    @app.delete("/recordings/{recording_id}")
    async def delete(recording_id: str) -> Any:
        return PlainTextResponse("Internal Server Error", status_code=500)

    return app


@contextlib.asynccontextmanager
async def rest_server() -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(rest_app(), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_rest_calls_and_the_error_text_people_read() -> None:
    async with rest_server() as base, Client(base, headers={"X-Test": "1"}) as client:
        created = await client.create_session("http://a.test", steps=[], name="n")
        assert created["spec"] == {"url": "http://a.test", "steps": [], "name": "n"}

        with pytest.raises(ApiError) as bad:
            await client.create_session("ftp://a.test")
        assert (bad.value.status, str(bad.value)) == (
            422, "body.url: URL scheme should be 'http' or 'https'")
        assert bad.value.detail == [{"loc": ["body", "url"], "msg": "bad scheme"}]

        with pytest.raises(ApiError) as missing:
            await client.session("nope")
        assert (missing.value.status, missing.value.message) == (404, "no session with id 'nope'")

        with pytest.raises(ApiError) as plain:
            await client.delete_recording("r1")
        assert (plain.value.status, plain.value.message) == (500, "Internal Server Error")

        # A 503 on the way is waited out; a 404 is not.
        info = await client.wait_for_state("abc", {"running"}, timeout_s=10)
        assert info["state"] == "running"
        with pytest.raises(ApiError):
            await client.wait_for_state("nope", {"running"}, timeout_s=10)

        assert client.stream_url("a b") == f"ws{base[4:]}/sessions/a%20b/stream"
        assert client.viewer("abc").url == client.stream_url("abc")
        assert client.replay("abc").idle_timeout_s is None

    with pytest.raises(GatewayUnreachable, match="cannot reach the gateway at"):
        async with Client(f"http://127.0.0.1:{free_port()}", timeout=5) as gone:
            await gone.pool()


def test_the_client_imports_no_ray() -> None:
    code = ("import sys, serve.client; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('ray', 'fastapi', 'starlette')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]", out.stdout
