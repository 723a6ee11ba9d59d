"""Who holds control of a session's page (pipeline/takeover.py) and what a take and a
hand-back do to its workflow; the gateway's side (serve/control_socket.py) with fakes."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from pipeline.errors import ControlRefused, TakeoverRefused
from pipeline.models import ControlAction, DrivenBy, SessionState, SessionStatus
from pipeline.protocol import (
    CLIENT_MESSAGE,
    ControlRefusal,
    ControlState,
    Input,
    InputRefusal,
    KeyInput,
    MouseInput,
    TakeControl,
)
from pipeline.takeover import ControlSeat, SessionHooks, Takeover
from serve.control_socket import MAX_LAG_S, ControlSocket, ViewLag
from serve.viewer_tokens import ViewerClaims

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- ControlSeat ------------------------------------------------------------------------------


def test_one_holder_at_a_time_and_a_second_is_refused_with_the_holders_label() -> None:
    clock = Clock()
    seat = ControlSeat("s1", clock)
    held = seat.take("a", "Ada", expires_at=2000.0)
    assert (held.label, held.until) == ("Ada", 1010.0)
    with pytest.raises(TakeoverRefused) as refused:
        seat.take("b", "Bob", expires_at=2000.0)
    assert (refused.value.reason, refused.value.holder) == ("held", "Ada")
    assert "Ada is in control" in str(refused.value)
    assert seat.take("a", "Ada", 2000.0).since == held.since  # a renewal, same take


def test_an_expired_link_takes_nothing() -> None:
    seat = ControlSeat("s1", Clock())
    with pytest.raises(TakeoverRefused) as refused:
        seat.take("a", "Ada", expires_at=999.0)
    assert refused.value.reason == "expired"
    assert seat.holder is None


def test_the_lease_runs_out_without_renewals_and_never_outlives_the_link() -> None:
    clock = Clock()
    seat = ControlSeat("s1", clock, lease_s=10.0)
    seat.take("a", "Ada", expires_at=1025.0)
    clock.now = 1008.0
    seat.renew("a")
    assert seat.deadline() == 1018.0
    clock.now = 1017.9
    assert seat.lapsed() is None
    clock.now = 1018.0
    lapsed = seat.lapsed()
    assert lapsed is not None and lapsed[1] == "lease" and seat.holder is None
    seat.take("b", "Bob", expires_at=1025.0)  # free again
    clock.now = 1020.0
    seat.renew("b")
    assert seat.deadline() == 1025.0  # the link's expiry bounds the lease
    clock.now = 1025.0
    lapsed = seat.lapsed()
    assert lapsed is not None and lapsed[1] == "expired" and seat.holder is None


def test_input_and_hand_back_need_the_holder() -> None:
    clock = Clock()
    seat = ControlSeat("s1", clock)
    seat.take("a", "Ada", 2000.0)
    for call in (seat.check, seat.renew, seat.release):
        with pytest.raises(TakeoverRefused) as refused:
            call("b")
        assert refused.value.reason == "not_held"
    assert seat.release("a").label == "Ada"
    with pytest.raises(TakeoverRefused):
        seat.check("a")


def test_a_lapsed_holder_does_not_block_the_next_take() -> None:
    clock = Clock()
    seat = ControlSeat("s1", clock, lease_s=5.0)
    seat.take("a", "Ada", 2000.0)
    clock.now += 6.0
    assert seat.take("b", "Bob", 2000.0).label == "Bob"


# -- Takeover: what a take does to the session ---------------------------------------------------


class FakeSession:
    """The session's side of SessionHooks: its state and its control changes."""

    def __init__(self, state: SessionState = SessionState.RUNNING) -> None:
        self.state = state
        self.changes: list[tuple[ControlAction, str, str | None]] = []
        self.tasks: set[asyncio.Task[Any]] = set()

    def change(self, action: ControlAction, by: str, steps: Any = None,
               reason: str | None = None) -> None:
        from pipeline.control import next_state

        moved = next_state("s1", self.state, action)
        self.changes.append((action, by, reason))
        self.state = moved

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        return task

    def hooks(self) -> SessionHooks:
        return SessionHooks(lambda: self.state, self.change, lambda: None, self.spawn)


def _takeover(session: FakeSession, clock: Clock | None = None, lease_s: float = 10.0
              ) -> Takeover:
    log = logging.LoggerAdapter(logging.getLogger("test"), {})
    return Takeover("s1", session.hooks(), log, clock or Clock(), lease_s)


async def test_a_take_pauses_a_running_workflow_and_the_hand_back_resumes_it() -> None:
    session = FakeSession()
    takeover = _takeover(session)
    await takeover.take("a", "Ada", 2000.0)
    assert session.state is SessionState.PAUSED
    assert (takeover.driven_by, takeover.holder_label) == (DrivenBy.PERSON, "Ada")
    with pytest.raises(ControlRefused):
        takeover.allows(ControlAction.RESUME, session.state)  # not under the person's hands
    await takeover.hand_back("a")
    assert session.state is SessionState.RUNNING
    assert takeover.driven_by is DrivenBy.STEPS
    assert session.changes == [(ControlAction.TAKE, "Ada", None),
                               (ControlAction.HAND_BACK, "Ada", None),
                               (ControlAction.RESUME, "Ada", None)]
    for task in session.tasks:
        task.cancel()


async def test_a_session_paused_before_the_take_stays_paused_after_it() -> None:
    session = FakeSession(SessionState.PAUSED)
    takeover = _takeover(session)
    await takeover.take("a", "Ada", 2000.0)
    await takeover.hand_back("a", "closed")
    assert session.state is SessionState.PAUSED
    assert session.changes[-1] == (ControlAction.HAND_BACK, "Ada", "closed")
    for task in session.tasks:
        task.cancel()


async def test_a_session_that_is_starting_cannot_be_taken_and_nothing_is_held() -> None:
    session = FakeSession(SessionState.STARTING)
    takeover = _takeover(session)
    with pytest.raises(ControlRefused):
        await takeover.take("a", "Ada", 2000.0)
    assert takeover.seat.holder is None


async def test_control_goes_back_by_itself_when_the_lease_runs_out() -> None:
    session = FakeSession()
    log = logging.LoggerAdapter(logging.getLogger("test"), {})
    takeover = Takeover("s1", session.hooks(), log, time.time, lease_s=0.1)
    await takeover.take("a", "Ada", expires_at=time.time() + 60)
    await asyncio.sleep(0.4)
    assert takeover.seat.holder is None
    assert session.changes[1] == (ControlAction.HAND_BACK, "Ada", "lease")
    assert session.state is SessionState.RUNNING


# -- the gateway's side ------------------------------------------------------------------------


def test_view_lag_is_how_long_the_oldest_unapplied_batch_has_waited() -> None:
    lag = ViewLag()
    lag.arrived(10, 100.0)
    lag.arrived(12, 100.5)
    lag.arrived(15, 101.0)
    assert lag.lag_s(15, 102.0) == 0.0  # saw everything
    assert lag.lag_s(12, 101.2) == pytest.approx(0.2)  # 13..15 came at 101.0
    assert lag.lag_s(9, 102.0) == pytest.approx(2.0)
    assert lag.lag_s(None, 102.0) == pytest.approx(2.0)


def test_the_control_messages_parse_and_bad_input_is_refused() -> None:
    message = CLIENT_MESSAGE.validate_json(
        '{"type":"input","seq":4,"events":[{"kind":"mouse","action":"click","x":10,"y":20},'
        '{"kind":"key","action":"down","key":"a"},{"kind":"text","text":"é"}]}')
    assert isinstance(message, Input) and len(message.events) == 3
    assert isinstance(CLIENT_MESSAGE.validate_json('{"type":"take_control"}'), TakeControl)
    for bad in ('{"type":"input","events":[]}',
                '{"type":"input","events":[{"kind":"mouse","action":"drag","x":1,"y":1}]}',
                '{"type":"input","events":[{"kind":"key","action":"down","key":""}]}',
                '{"type":"take_control","please":true}'):
        with pytest.raises(ValueError):
            CLIENT_MESSAGE.validate_json(bad)


class FakeLine:
    def __init__(self, refuse: TakeoverRefused | None = None) -> None:
        self.refuse = refuse
        self.calls: list[tuple[str, Any]] = []

    async def take_control(self, holder_id: str, label: str, expires_at: float
                           ) -> SessionStatus:
        if self.refuse is not None:
            raise self.refuse
        self.calls.append(("take", label))
        return SessionStatus(state=SessionState.PAUSED)

    async def renew_control(self, holder_id: str) -> None:
        self.calls.append(("renew", holder_id))

    async def control_input(self, holder_id: str, events: list[Any]) -> None:
        self.calls.append(("input", events))

    async def hand_back(self, holder_id: str, reason: str | None) -> SessionStatus:
        self.calls.append(("hand_back", reason))
        return SessionStatus(state=SessionState.RUNNING)


class FakeLines:
    def __init__(self, line: FakeLine) -> None:
        self._line = line

    async def line(self, session_id: str) -> FakeLine:
        return self._line


class FakeHub:
    def __init__(self) -> None:
        self.controller: str | None = None
        self.arrivals = ViewLag()


def _claims(label: str = "Ada", role: str = "control") -> ViewerClaims:
    return ViewerClaims(k="session", t="s1", r=role, x=4_000_000_000.0, l=label)


def _socket(line: FakeLine, hub: FakeHub, sent: list[Any], monotonic: Clock | None = None
            ) -> ControlSocket:
    async def send(text: str) -> None:
        from serve.client.messages import parse_control

        sent.append(parse_control(text))

    return ControlSocket("s1", send, hub, FakeLines(line), _claims(), _claims,
                         monotonic=monotonic or Clock())


async def test_a_take_then_input_in_order_then_closing_hands_back() -> None:
    line, hub, sent = FakeLine(), FakeHub(), []
    socket = _socket(line, hub, sent)
    await socket.on_message(TakeControl())
    assert isinstance(sent[-1], ControlState) and sent[-1].you and sent[-1].holder == "Ada"
    assert hub.controller == "Ada"
    click = MouseInput(action="click", x=5, y=6)
    key = KeyInput(action="down", key="a")
    await socket.on_message(Input(seq=None, events=[click]))
    await socket.on_message(Input(seq=None, events=[key]))
    await asyncio.sleep(0.05)
    inputs = [events for kind, events in line.calls if kind == "input"]
    assert [e for batch in inputs for e in batch] == [click, key]
    await socket.close()
    assert line.calls[-1] == ("hand_back", "closed") and hub.controller is None


async def test_a_second_controller_is_refused_with_who_holds_it_not_closed() -> None:
    line = FakeLine(TakeoverRefused("s1", "held", "Ada is in control", "Ada"))
    sent: list[Any] = []
    socket = _socket(line, FakeHub(), sent)
    await socket.on_message(TakeControl())
    assert isinstance(sent[-1], ControlRefusal)
    assert (sent[-1].reason, sent[-1].holder) == ("held", "Ada")
    assert not socket.holding


async def test_input_from_a_viewer_behind_the_stream_is_dropped_but_releases_go() -> None:
    line, hub, sent = FakeLine(), FakeHub(), []
    clock = Clock()
    socket = _socket(line, hub, sent, monotonic=clock)
    await socket.on_message(TakeControl())
    hub.arrivals.arrived(50, clock.now)
    clock.now += MAX_LAG_S + 0.5
    up = KeyInput(action="up", key="a")
    await socket.on_message(Input(seq=40, events=[KeyInput(action="down", key="b"), up]))
    await asyncio.sleep(0.05)
    assert [e for kind, batch in line.calls if kind == "input" for e in batch] == [up]
    assert any(isinstance(m, InputRefusal) and m.reason == "behind" for m in sent)
    assert socket.dropped_behind == 1
    await socket.on_message(Input(seq=50, events=[MouseInput(action="move", x=1, y=1)]))
    await asyncio.sleep(0.05)
    assert socket.forwarded == 2  # caught up: sent
    await socket.close()


async def test_input_without_control_is_refused_and_not_sent() -> None:
    line, sent = FakeLine(), []
    socket = _socket(line, FakeHub(), sent)
    await socket.on_message(Input(seq=1, events=[MouseInput(action="move", x=1, y=1)]))
    await asyncio.sleep(0.01)
    assert line.calls == []
    assert isinstance(sent[-1], InputRefusal) and sent[-1].reason == "not_in_control"


def test_only_a_control_link_of_this_session_may_take_control_with_auth_on_or_off() -> None:
    import time as _time

    from pipeline.config import Settings
    from pipeline.models import ViewerLinkRequest
    from serve.access import Access, NotForThis
    from serve.viewer_tokens import TokenRefused

    for auth in ("off", "required"):
        access = Access(Settings(auth=auth, token_secret="s" * 32, api_keys="k" * 20))
        link = access.session_link("http://x", "s1", 0, 3600,
                                   ViewerLinkRequest(role="control", label="Ada"))
        view = access.session_link("http://x", "s1", 0, 3600, ViewerLinkRequest(role="view"))
        assert access.controller(link.token, "s1").label == "Ada"
        with pytest.raises(NotForThis, match="role is view"):
            access.controller(view.token, "s1")
        with pytest.raises(NotForThis):
            access.controller(None, "s1")
        with pytest.raises(NotForThis):
            access.controller(link.token, "s2")
        expired = access.tokens.mint(ViewerClaims(k="session", t="s1", r="control",
                                                  x=_time.time() - 1, l="Ada"))
        with pytest.raises(TokenRefused, match="expired"):
            access.controller(expired, "s1")
