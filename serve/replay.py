"""Replaying a stored recording to one viewer, in real time, over protocol v1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import WebSocket

from pipeline.protocol import Reset, decode_frame, mark_reset


async def replay_frames(websocket: WebSocket, frames: AsyncIterator[bytes]) -> None:
    """Sends a recording's frames in real time by their page timestamps: each frame when
    its newest event is as far from the recording's first event as it was in the page.
    A frame that does not continue the sequence (a restart after a node was lost) starts
    over, as a live stream's RESET frame does."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    first_ts: float | None = None
    last_seq: int | None = None
    async for frame in frames:
        header, _ = decode_frame(frame)
        if last_seq is None or header.first_seq != last_seq + 1:
            if not header.segment_start:
                continue  # nothing decodes before a segment start
            await websocket.send_text(Reset(reason="join" if last_seq is None else "gap",
                                            seq=header.first_seq).model_dump_json())
            frame = mark_reset(frame)
        if first_ts is None:
            first_ts = header.first_ts
        delay = started + (header.last_ts - first_ts) / 1000.0 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await websocket.send_bytes(frame)
        last_seq = header.last_seq


__all__ = ["replay_frames"]
