"""Workflow control through the real gateway: a session paused at a step boundary stays
there while its page streams on, takes more steps, runs them once resumed, and has each
change in its status and, as an `rrstream.control` custom event, in its stream."""

from __future__ import annotations

import asyncio

import pytest

from serve.client import ApiError, Frame

WAIT = {"action": "wait", "ms": 600}


def control_events(frame: Frame) -> list[dict]:
    if not frame.has_event(5):
        return []
    return [e["data"]["payload"] for e in frame.events
            if e["type"] == 5 and e["data"]["tag"] == "rrstream.control"]


def step_states(info: dict) -> list[str]:
    return [s["state"] for s in info["steps"]]


async def test_a_paused_session_takes_steps_and_runs_them_once_resumed(client,
                                                                       demo_site) -> None:
    info = await client.create_session(f"{demo_site.url}/list.html", name="controlled",
                                       steps=[WAIT] * 4, idle_timeout_s=0)
    sid = info["id"]
    try:
        async with client.viewer(sid) as viewer:
            await client.wait_for_session(
                sid, lambda i: i["state"] == "running" and "running" in step_states(i), 60)
            paused = await client.pause_session(sid)
            assert paused["state"] == "paused" and paused["driven_by"] == "steps"
            # The step that was running finishes; the next one does not start.
            settled = await client.wait_for_session(
                sid, lambda i: "running" not in step_states(i), 10)
            held = step_states(settled)
            assert "pending" in held and held.count("done") >= 1, held
            await asyncio.sleep(2 * WAIT["ms"] / 1000)
            still = await client.session(sid)
            assert still["state"] == "paused" and step_states(still) == held
            with pytest.raises(ApiError) as refused:
                await client.pause_session(sid)
            assert refused.value.status == 409
            assert refused.value.message == (f"session {sid} is paused: only a running "
                                              "session can be paused")

            added = await client.add_steps(sid, [{"action": "click", "selector": "#add-item"},
                                                 {"action": "wait", "ms": 100}])
            assert added["state"] == "paused" and len(added["steps"]) == 6
            assert step_states(added)[4:] == ["pending", "pending"]
            resumed = await client.resume_session(sid)
            assert resumed["state"] == "running"
            idle = await client.wait_for_state(sid, {"idle"}, 60)
            assert step_states(idle) == ["done"] * 6 and idle["steps"][4]["action"] == "click"
            # Steps added to an idle session run at once.
            again = await client.add_steps(sid, [{"action": "wait", "ms": 50}])
            assert again["state"] in ("running", "idle")
            idle = await client.wait_for_state(sid, {"idle"}, 30)
            assert step_states(idle) == ["done"] * 7

            changes = [(c["action"], c["by"], c.get("steps")) for c in idle["control"]]
            assert changes == [("pause", "api", None), ("steps", "api", 2),
                               ("resume", "api", None), ("steps", "api", 1)]
            assert idle["control_dropped"] == 0
            # Each change is in the stream too, where it was made.
            await viewer.wait_until(
                lambda: sum(len(control_events(f)) for f in viewer.frames) >= 4, 20)
            streamed = [e for f in viewer.frames for e in control_events(f)]
            assert [(e["action"], e["by"], e.get("steps")) for e in streamed] == changes
            assert [e["at"] for e in streamed] == [c["at"] for c in idle["control"]]
    finally:
        await client.stop_session(sid)
    with pytest.raises(ApiError) as ended:
        await client.add_steps(sid, [WAIT])
    assert ended.value.status == 409 and "is stopped" in ended.value.message
