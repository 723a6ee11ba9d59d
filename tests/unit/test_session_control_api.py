"""The workflow control routes on an app of their own: the API's error handlers, the
gateway's caller check (serve/access.py) and a fake registry that decides as sessions do
(pipeline/control.py): statuses, JSON error bodies, validation and who is recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from pipeline.config import Settings
from pipeline.control import next_state
from pipeline.errors import ControlRefused, SessionNotFound
from pipeline.models import (
    ControlAction,
    ControlChange,
    SessionRecord,
    SessionSpec,
    SessionState,
    SessionStatus,
)
from pipeline.registry import Described
from pipeline.steps import MAX_STEPS, Step
from serve.access import Access
from serve.errors import install_error_handlers
from serve.gateway import api_caller
from serve.session_control import SessionControl, controller_of, mount_session_control

KEY = "key-for-tests"


class FakeRegistry:
    """Sessions by id, in a state; each control call moves it as a session would."""

    def __init__(self) -> None:
        self.records: dict[str, SessionRecord] = {}
        self.control: list[ControlChange] = []
        self.added: list[Step] = []

    def session(self, session_id: str, state: SessionState) -> None:
        self.records[session_id] = SessionRecord(id=session_id, state=state, created_at=1.0,
                                                 spec=SessionSpec(url="https://a.test/"))

    def _move(self, session_id: str, action: ControlAction, by: str,
              steps: int | None = None) -> Described:
        record = self.records.get(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        record.state = next_state(session_id, record.state, action)
        self.control.append(ControlChange(action=action, by=by, at=2.0, steps=steps))
        return record, SessionStatus(state=record.state, control=list(self.control)), None

    async def pause(self, session_id: str, by: str) -> Described:
        return self._move(session_id, ControlAction.PAUSE, by)

    async def resume(self, session_id: str, by: str) -> Described:
        return self._move(session_id, ControlAction.RESUME, by)

    async def add_steps(self, session_id: str, steps: list[Step], by: str) -> Described:
        if len(steps) + len(self.added) > MAX_STEPS:
            raise ControlRefused(session_id, "steps", "has too many steps")
        self.added.extend(steps)
        return self._move(session_id, ControlAction.STEPS, by, len(steps))


def _app(settings: Settings, registry: FakeRegistry) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    mount_session_control(app, api_caller)
    app.state.access = Access(settings)
    app.state.session_control = SessionControl(registry)
    return app


@pytest.fixture
def registry() -> FakeRegistry:
    fake = FakeRegistry()
    fake.session("run", SessionState.RUNNING)
    fake.session("idle", SessionState.IDLE)
    fake.session("new", SessionState.STARTING)
    fake.session("gone", SessionState.STOPPED)
    return fake


async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                 base_url="http://api.test") as http:
        yield http


@pytest.fixture
async def api(registry: FakeRegistry) -> AsyncIterator[httpx.AsyncClient]:
    async for http in _client(_app(Settings(auth="off"), registry)):
        yield http


@pytest.fixture
async def keyed_api(registry: FakeRegistry) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(auth="required", api_keys=[KEY], token_secret=SecretStr("s3cret"))
    async for http in _client(_app(settings, registry)):
        yield http


async def test_pause_steps_resume_answer_the_session_with_its_control_list(
        api: httpx.AsyncClient, registry: FakeRegistry) -> None:
    paused = await api.post("/sessions/run/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "paused" and paused.json()["driven_by"] == "steps"
    assert paused.json()["viewer_url"] == "http://api.test/?session=run"
    added = await api.post("/sessions/run/steps", json={"steps": [
        {"action": "wait", "ms": 10}, {"action": "click", "selector": "#go"}]})
    assert added.status_code == 200 and added.json()["state"] == "paused"
    resumed = await api.post("/sessions/run/resume")
    assert resumed.status_code == 200 and resumed.json()["state"] == "running"
    assert [(c["action"], c["by"], c.get("steps")) for c in resumed.json()["control"]] == [
        ("pause", "api", None), ("steps", "api", 2), ("resume", "api", None)]
    assert [s.action for s in registry.added] == ["wait", "click"]


async def test_steps_to_an_idle_session_set_it_running(api: httpx.AsyncClient) -> None:
    answer = await api.post("/sessions/idle/steps", json={"steps": [{"action": "wait",
                                                                     "ms": 1}]})
    assert answer.status_code == 200 and answer.json()["state"] == "running"


@pytest.mark.parametrize(("path", "words"), [
    ("/sessions/new/pause", "session new is starting: only a running session can be paused"),
    ("/sessions/idle/pause", "session idle is idle: only a running session can be paused"),
    ("/sessions/run/resume", "session run is running: only a paused session can be resumed"),
    ("/sessions/gone/pause", "session gone is stopped: only a running session can be paused"),
])
async def test_a_state_that_does_not_allow_it_is_a_409_in_words(api: httpx.AsyncClient,
                                                                path: str, words: str) -> None:
    answer = await api.post(path)
    assert answer.status_code == 409, answer.text
    assert answer.json() == {"message": words, "detail": words}


async def test_steps_to_an_ended_session_are_a_409(api: httpx.AsyncClient) -> None:
    answer = await api.post("/sessions/gone/steps", json={"steps": [{"action": "wait",
                                                                     "ms": 1}]})
    assert answer.status_code == 409
    assert answer.json()["message"] == ("session gone is stopped: steps can be added to a "
                                        "running, paused or idle session only")


async def test_an_unknown_session_is_a_404(api: httpx.AsyncClient) -> None:
    for path in ("/sessions/nope/pause", "/sessions/nope/resume"):
        answer = await api.post(path)
        assert answer.status_code == 404 and answer.json()["message"] == \
            "no session with id 'nope'"


@pytest.mark.parametrize(("body", "words"), [
    ({}, "body.steps: Field required"),
    ({"steps": []}, "body.steps: List should have at least 1 item"),
    ({"steps": [{"action": "wait", "ms": 1}] * (MAX_STEPS + 1)},
     f"body.steps: List should have at most {MAX_STEPS} items"),
    ({"steps": [{"action": "fly"}]}, "body.steps.0: Input tag 'fly' found using 'action'"),
    ({"steps": [{"action": "wait", "ms": -1}]}, "body.steps.0.wait.ms: Input should be "
                                                "greater than or equal to 0"),
    ({"steps": [], "more": 1}, "body.more: Extra inputs are not permitted"),
], ids=["no-steps", "empty", "too-many", "unknown-action", "negative-wait", "extra-field"])
async def test_a_malformed_body_is_a_422_that_names_the_field(api: httpx.AsyncClient,
                                                              body: dict, words: str) -> None:
    answer = await api.post("/sessions/run/steps", json=body)
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["message"], answer.json()["message"]


async def test_with_auth_required_control_needs_a_key_and_records_its_identity(
        keyed_api: httpx.AsyncClient) -> None:
    refused = await keyed_api.post("/sessions/run/pause")
    assert refused.status_code == 401 and "an API key is required" in refused.json()["message"]
    wrong = await keyed_api.post("/sessions/run/pause", headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401
    paused = await keyed_api.post("/sessions/run/pause",
                                  headers={"Authorization": f"Bearer {KEY}"})
    assert paused.status_code == 200
    by = paused.json()["control"][-1]["by"]
    assert by.startswith("key:") and len(by) == len("key:") + 12 and KEY not in by


def test_a_caller_without_a_key_is_named_api_not_by_its_address() -> None:
    assert controller_of("key:0123456789ab") == "key:0123456789ab"
    assert controller_of("addr:10.1.2.3") == "api"
