"""Taking control of a session's page from a viewer (protocol 1.1), through the real stack:
the refusals, and input reaching the real page, with the Python protocol client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.protocol import ControlRefusal, KeyInput, MouseInput
from serve.client import Client, StreamClosed, Viewer
from tests.conftest import _serve_site, wait_for_state

pytestmark = pytest.mark.integration

SITE = Path(__file__).parent.parent / "fixtures" / "takeover_site"
# The button's centre and the field's, in the page's CSS pixels (index.html's layout).
BUTTON = (140.0, 104.0)
FIELD = (190.0, 180.0)


@pytest.fixture(scope="session")
def takeover_site() -> Iterator[Any]:
    with _serve_site(SITE) as site:
        yield site


async def _page_text(viewer: Viewer) -> str:
    """What the viewer's stream says the page holds: every text and input value in its
    events so far (a plain scan: the values are distinct)."""
    return repr(viewer.events())


async def _wait(condition: Any, timeout_s: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def _session(client: Client, site: Any, steps: list[dict[str, Any]] | None = None
                   ) -> dict[str, Any]:
    return await client.create_session(f"{site.url}/index.html", steps=steps or [])


async def _running(api: Any, session_id: str) -> dict[str, Any]:
    return await wait_for_state(api, session_id, {"running", "idle", "paused"})


async def test_a_view_link_cannot_take_control(client: Client, api: Any,
                                               takeover_site: Any) -> None:
    session = await _session(client, takeover_site)
    await _running(api, session["id"])
    link = await client.viewer_link(session["id"], role="view")
    closed = await _refused(client.viewer(session["id"], token=link["token"], control=True))
    assert closed.code == 4403 and "role is view" in closed.reason
    await client.stop_session(session["id"])


async def test_an_expired_control_link_is_refused(client: Client, api: Any,
                                                  takeover_site: Any) -> None:
    session = await _session(client, takeover_site)
    await _running(api, session["id"])
    link = await client.viewer_link(session["id"], role="control", ttl_s=1, label="Late")
    await asyncio.sleep(1.5)
    closed = await _refused(client.viewer(session["id"], token=link["token"], control=True))
    assert closed.code == 4401 and "expired" in closed.reason
    await client.stop_session(session["id"])


async def test_input_reaches_the_page_a_second_controller_is_refused_and_hand_back_resumes(
        client: Client, api: Any, takeover_site: Any) -> None:
    session = await _session(client, takeover_site, steps=[
        {"action": "wait", "ms": 6000},  # the take comes during it, on a busy machine too
        {"action": "click", "selector": "#next"},
    ])
    sid = session["id"]
    await _running(api, sid)
    ada = await client.viewer_link(sid, role="control", label="Ada")
    bob = await client.viewer_link(sid, role="control", label="Bob")
    async with client.viewer(sid, token=ada["token"], control=True) as first, \
            client.viewer(sid, token=bob["token"], control=True) as second:
        await first.wait_until(lambda: first.last_seq is not None, timeout_s=20)
        await first.take_control()
        await first.wait_until(lambda: first.control is not None and first.control.you,
                         timeout_s=10)
        info = (await api.get(f"/sessions/{sid}")).json()
        assert (info["driven_by"], info["controller"]) == ("person", "Ada")
        assert info["state"] == "paused"
        assert info["control"][-1]["action"] == "take" and info["control"][-1]["by"] == "Ada"

        await second.wait_until(lambda: second.last_seq is not None, timeout_s=20)
        await second.take_control()
        await second.wait_until(lambda: bool(second.refusals), timeout_s=10)
        refusal = second.refusals[-1]
        assert isinstance(refusal, ControlRefusal) and refusal.holder == "Ada"
        await second.wait_until(lambda: second.control is not None
                          and second.control.holder == "Ada", timeout_s=5)

        await first.send_input(MouseInput(action="click", x=BUTTON[0], y=BUTTON[1]))
        await first.send_input(MouseInput(action="click", x=FIELD[0], y=FIELD[1]))
        for char in "hi there":
            await first.send_input(KeyInput(action="down", key=char),
                                   KeyInput(action="up", key=char))
        await _wait(lambda: _has(second, "clicked 1"), what="the click, seen by the second")
        await _wait(lambda: _has(second, "the page has: hi there"),
                    what="the text in the real page, seen by the second")
        # Every keystroke was recorded (rrweb input events, source 5), not the final value.
        typed = {e["data"].get("text") for e in second.events()
                 if e.get("type") == 3 and e["data"].get("source") == 5}
        assert {"h", "hi", "hi t", "hi the"} <= typed, typed
        async def first_step_over() -> bool:
            steps = (await api.get(f"/sessions/{sid}")).json()["steps"]
            return steps[0]["state"] not in ("pending", "running")

        await _wait(first_step_over, what="the first step's end")
        await asyncio.sleep(0.5)  # the workflow stays paused at the boundary
        info = (await api.get(f"/sessions/{sid}")).json()
        assert info["state"] == "paused" and info["steps"][1]["state"] == "pending"

        await first.hand_back()
        await first.wait_until(lambda: first.control is not None and not first.control.you,
                         timeout_s=10)
        await _wait(lambda: _has(second, "workflow went on"), what="the next step")
        info = (await api.get(f"/sessions/{sid}")).json()
        assert info["driven_by"] == "steps" and info["controller"] is None
        assert [c["action"] for c in info["control"]][-3:] == ["take", "hand_back", "resume"]
    await client.stop_session(sid)


async def _refused(viewer: Viewer) -> StreamClosed:
    """How the socket closes when `viewer`, which may not, asks for control."""
    viewer.start()
    try:
        await viewer.wait_until(lambda: viewer.control is not None, timeout_s=10)
        assert viewer.control is not None and not viewer.control.can_take
        await viewer.take_control()
        with pytest.raises(StreamClosed) as closed:
            await viewer.wait_until(lambda: False, timeout_s=10)
        return closed.value
    finally:
        with contextlib.suppress(StreamClosed):
            await viewer.stop()


async def _has(viewer: Viewer, text: str) -> bool:
    return text in await _page_text(viewer)
