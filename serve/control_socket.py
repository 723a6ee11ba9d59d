"""ControlSocket: the protocol 1.1 side of one viewer socket, taking control of the page.

A viewer whose hello says `minor: 1` hears who is in control (`control`) when it joins and
whenever that changes; if its token is a `control` link's it may `take_control`, send
`input` while it holds it, and `hand_back` (docs/protocol.md, "Taking control"). The
session actor decides who holds control (pipeline/takeover.py); this side checks the
link, forwards input in order, renews the holder's lease while the socket is open, and
hands back when the socket closes or the link expires.

Input from a viewer that is behind the stream is not sent: `ViewLag` knows when each run
of batches reached this replica, and an input whose `seq` (the newest batch the viewer
had applied when the person acted) leaves a batch unapplied that arrived more than
`MAX_LAG_S` before is dropped, but for releases (a button's or a key's up), which always
go, so nothing stays pressed.

Plain Python over a `SessionLines` (serve/session_lines.py over Ray), so unit tests run it
with fakes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pipeline.errors import (
    ActorLost,
    ControlRefused,
    RegistryUnavailable,
    TakeoverRefused,
    describe_error,
)
from pipeline.models import SessionStatus
from pipeline.protocol import (
    ControlRefusal,
    ControlState,
    HandBack,
    Input,
    InputEvent,
    InputRefusal,
    KeyInput,
    MouseInput,
    TakeControl,
)
from pipeline.takeover import RENEW_S
from serve.viewer_tokens import TokenRefused, ViewerClaims

_log = logging.getLogger(__name__)
MAX_LAG_S = 1.0  # input from a viewer further behind the stream than this is not sent
_REFUSALS_EVERY_S = 1.0
_LOOK_S = 0.25  # how often a socket looks whether the hub heard of a new holder
_ARRIVALS_KEPT = 4096


class SessionLine(Protocol):
    """The session's actor, as the gateway calls it while a person is in control
    (pipeline/session.py `take_control` ...)."""

    async def take_control(self, holder_id: str, label: str,
                           expires_at: float) -> SessionStatus: ...

    async def renew_control(self, holder_id: str) -> None: ...

    async def control_input(self, holder_id: str, events: list[InputEvent]) -> None: ...

    async def hand_back(self, holder_id: str, reason: str | None) -> SessionStatus: ...


class SessionLines(Protocol):
    async def line(self, session_id: str) -> SessionLine:
        """The session's line; ControlRefused when it has no actor that takes control."""


class Controls(Protocol):
    """What a ControlSocket needs of its hub (serve/viewers.py SessionHub)."""

    controller: str | None  # the holder's label, as the hub last heard it
    arrivals: ViewLag


class ViewLag:
    """When each run of a session's batches reached this replica (`arrived`), and so how
    far behind a viewer is that applied everything up to a batch (`lag_s`)."""

    def __init__(self, keep: int = _ARRIVALS_KEPT) -> None:
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=keep)  # (last seq, when)

    def arrived(self, last_seq: int, at: float) -> None:
        if not self._arrivals or last_seq > self._arrivals[-1][0]:
            self._arrivals.append((last_seq, at))

    def lag_s(self, seen: int | None, now: float) -> float:
        """How long the oldest batch after `seen` has been here (0: nothing is newer)."""
        if seen is None:
            return now - self._arrivals[0][1] if self._arrivals else 0.0
        oldest: float | None = None
        for last_seq, at in reversed(self._arrivals):
            if last_seq <= seen:
                break
            oldest = at
        return 0.0 if oldest is None else max(0.0, now - oldest)


def is_release(event: InputEvent) -> bool:
    return (isinstance(event, MouseInput) and event.action == "up") or (
        isinstance(event, KeyInput) and event.action == "up")


class ControlSocket:
    """One 1.1 viewer socket's part in taking control. `claims`: its control link's, or
    None when its token grants no control (`can_take` False); `refuse(code, reason)`
    closes the socket."""

    def __init__(self, session_id: str, send: Callable[[str], Awaitable[None]],
                 hub: Controls, lines: SessionLines | None, claims: ViewerClaims | None,
                 check: Callable[[], ViewerClaims], clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """`check`: the socket's control claims now, or TokenRefused / NotForThis (4401 /
        4403), which `take` lets through for the caller to close the socket with."""
        self.session_id = session_id
        self._send = send
        self._hub = hub
        self._lines = lines
        self._claims = claims
        self._check = check
        self._clock = clock
        self._monotonic = monotonic
        self.holder_id = uuid.uuid4().hex
        self._line: SessionLine | None = None
        self._holding: ViewerClaims | None = None
        self._told: tuple[str | None, bool] | None = None
        self._queue: list[InputEvent] = []
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refused_at = -1e9
        self.acked: int | None = None
        self.forwarded = 0
        self.dropped_behind = 0

    @property
    def can_take(self) -> bool:
        return self._claims is not None and self._lines is not None

    @property
    def holding(self) -> bool:
        return self._holding is not None

    async def run(self) -> None:
        """Tells the viewer who is in control now, then whenever that changes, until the
        socket closes (cancelled)."""
        while True:
            if not self.holding:
                await self._tell(self._hub.controller, None)
            await asyncio.sleep(_LOOK_S)

    async def on_message(self, message: TakeControl | HandBack | Input) -> None:
        if isinstance(message, Input):
            self._on_input(message)
        elif isinstance(message, TakeControl):
            await self._take()
        else:
            await self._hand_back(None)

    async def close(self) -> None:
        """The socket closed: a holder hands back."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.holding:
            await self._hand_back("closed", tell=False)

    # -- taking and handing back -------------------------------------------------------------

    async def _take(self) -> None:
        if self.holding:
            await self._tell_holding("taken")
            return
        claims = self._check()  # 4401 / 4403 for the caller, as at hello
        assert self._lines is not None
        label = claims.label or "a control link"
        try:
            self._line = await self._lines.line(self.session_id)
            await self._line.take_control(self.holder_id, label, claims.expires_at)
        except TakeoverRefused as exc:
            if exc.reason == "expired":  # by the session's clock: closed 4401, as at hello
                raise TokenRefused("expired", "the viewer token has expired") from None
            await self._send(ControlRefusal(reason="held", message=str(exc),
                                            holder=exc.holder).model_dump_json())
            return
        except (ControlRefused, ActorLost, RegistryUnavailable) as exc:
            await self._send(ControlRefusal(reason="state", message=str(exc)).model_dump_json())
            return
        self._holding = claims
        self._hub.controller = label
        self._spawn(self._renew(), "control-renew")
        self._spawn(self._forward(), "control-input")
        await self._tell_holding("taken")
        _log.info("session %s: %s took control", self.session_id, label,
                  extra={"session_id": self.session_id})

    async def _hand_back(self, reason: str | None, tell: bool = True) -> None:
        claims, self._holding = self._holding, None
        if claims is None:
            if tell:
                await self._tell(self._hub.controller, "handed_back", force=True)
            return
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self._queue.clear()
        self._hub.controller = None
        line = self._line
        if line is not None:
            try:
                await line.hand_back(self.holder_id, reason)
            except (TakeoverRefused, ActorLost, RegistryUnavailable) as exc:
                # Lost it already (its lease ran out, the actor was replaced): nothing held.
                _log.info("session %s: hand-back of %s: %s", self.session_id,
                          claims.label, describe_error(exc), extra={"session_id": self.session_id})
        if tell:
            await self._tell(None, reason or "handed_back", force=True)

    async def _renew(self) -> None:
        """Renews the lease while the socket is open; hands back at the link's expiry."""
        claims = self._holding
        assert claims is not None and self._line is not None
        while True:
            left = claims.expires_at - self._clock()
            if left <= 0:
                self._spawn(self._hand_back("expired"), "control-expired")
                return
            await asyncio.sleep(min(RENEW_S, left))
            if self._clock() >= claims.expires_at:
                continue
            try:
                await self._line.renew_control(self.holder_id)
            except (TakeoverRefused, ActorLost) as exc:
                self._lost(describe_error(exc))
                return
            except RegistryUnavailable:
                continue

    def _lost(self, why: str) -> None:
        """Control went away without a hand-back (the session's actor was replaced, or its
        lease ran out): the viewer is told."""
        _log.info("session %s: control lost: %s", self.session_id, why,
                  extra={"session_id": self.session_id})
        self._holding = None
        self._hub.controller = None
        self._queue.clear()
        self._spawn(self._tell(None, "lost", force=True), "control-lost")

    # -- input ---------------------------------------------------------------------------------

    def _on_input(self, message: Input) -> None:
        if not self.holding:
            self._refuse_input(InputRefusal(reason="not_in_control",
                                            message="this viewer is not in control"))
            return
        seen = message.seq if message.seq is not None else self.acked
        lag = self._hub.arrivals.lag_s(seen, self._monotonic())
        events = list(message.events)
        if lag > MAX_LAG_S:
            kept = [e for e in events if is_release(e)]
            self.dropped_behind += len(events) - len(kept)
            events = kept
            self._refuse_input(InputRefusal(
                reason="behind", lag_ms=round(lag * 1000.0),
                message=f"this viewer is {lag:.1f} s behind the page; input waits until "
                "it has caught up"))
        if events:
            self._queue.extend(events)
            self._wake.set()

    async def _forward(self) -> None:
        """One call at a time, so the page gets the input in the order it was sent; what
        arrives meanwhile goes in the next call."""
        line = self._line
        assert line is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            events, self._queue = self._queue, []
            if not events:
                continue
            try:
                await line.control_input(self.holder_id, events)
                self.forwarded += len(events)
            except (TakeoverRefused, ActorLost) as exc:
                self._lost(describe_error(exc))
                return
            except RegistryUnavailable:
                continue

    def _refuse_input(self, refusal: InputRefusal) -> None:
        now = self._monotonic()
        if now - self._refused_at < _REFUSALS_EVERY_S:
            return
        self._refused_at = now
        self._spawn(self._send(refusal.model_dump_json()), "input-refused")

    # -- telling the viewer --------------------------------------------------------------------

    async def _tell_holding(self, reason: str) -> None:
        claims = self._holding
        assert claims is not None
        self._told = (claims.label, True)
        await self._send(ControlState(holder=claims.label or "a control link", you=True,
                                      can_take=True, since=self._clock(),
                                      until=claims.expires_at, reason=reason).model_dump_json())

    async def _tell(self, holder: str | None, reason: str | None, force: bool = False) -> None:
        if not force and self._told == (holder, False):
            return
        self._told = (holder, False)
        await self._send(ControlState(holder=holder, can_take=self.can_take,
                                      reason=reason).model_dump_json())

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[Any]) -> None:
    exc = None if task.cancelled() else task.exception()
    if isinstance(exc, Exception):
        _log.warning("control task %s failed: %s", task.get_name(), describe_error(exc))


__all__ = ["MAX_LAG_S", "ControlSocket", "Controls", "SessionLine", "SessionLines", "ViewLag",
           "is_release"]
