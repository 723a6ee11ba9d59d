"""A person taking control of a session's page from the viewer: who holds control, until
when, and what taking and handing back do to the session.

`ControlSeat` is the decision, plain and clock-injected (tests/unit/test_takeover.py): one
holder at a time, named by the gateway's id for the controlling socket and shown by its
control link's label; a holder's lease runs out `LEASE_S` after its last renewal (the
gateway renews every `RENEW_S` while the socket is open, so a gateway replica that dies
hands back within `LEASE_S`), and never outlives the control link's own expiry.

`Takeover` is what a BrowserSession does with it (pipeline/session.py wires it with a few
callbacks, so it runs without Ray or a browser in tests): a take pauses a running workflow
at its next step boundary (the session's own pause) and switches the page's recorder to
record every keystroke (rrweb `sampling.input: "all"`, frontend/src/recorder.js
`everyKeystroke`), so other viewers see typing as it happens; input goes to the page in
order (pipeline/page_input.py); a hand-back, by the person, by the socket closing, or by
the lease or the link running out, lets go of every key and button still pressed,
records again as before and resumes what the take paused. Each take and hand-back is a
control change (`take`, `hand_back`) with `by` the link's label, in the session's status
and, as an `rrstream.control` custom event, in its stream and recording.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Frame, Page

from pipeline.errors import ControlRefused, TakeoverRefused, describe_error
from pipeline.models import ControlAction, DrivenBy, SessionState
from pipeline.page_input import PageInput
from pipeline.protocol import InputEvent

LEASE_S = 10.0  # a holder not renewed for this long loses control
RENEW_S = 3.0  # how often the gateway renews a controlling socket's lease
_SAMPLING_S = 2.0  # a page asked to change its input sampling
# Sets the flag in every frame (a document the recorder starts later reads it at its
# start) and restarts a running recorder with the sampling it asks for.
_KEYSTROKES_JS = ("(on) => { window.__rrstreamKeystrokes = on; const r = "
                  "window.__rrstreamRecorder; return r && r.everyKeystroke ? "
                  "r.everyKeystroke(on) : null; }")


@dataclass(slots=True, frozen=True)
class Holder:
    """Who is in control: `id` the gateway's name for the socket, `label` the control
    link's; `until` the end of its lease, `expires_at` its link's expiry (Unix s)."""

    id: str
    label: str
    since: float
    until: float
    expires_at: float


class ControlSeat:
    """One holder at a time, each with a lease (see the module's docstring)."""

    def __init__(self, session_id: str, clock: Callable[[], float] = time.time,
                 lease_s: float = LEASE_S) -> None:
        self._session_id = session_id
        self._clock = clock
        self._lease_s = lease_s
        self._holder: Holder | None = None

    @property
    def holder(self) -> Holder | None:
        """The holder, even one whose lease ran out and that `lapsed()` has not taken yet."""
        return self._holder

    def take(self, holder_id: str, label: str, expires_at: float) -> Holder:
        """Control for `holder_id` (again, if it holds it: a renewal). TakeoverRefused
        `held` while another holder's lease runs, `expired` for a link that has."""
        now = self._clock()
        if expires_at <= now:
            raise TakeoverRefused(self._session_id, "expired", "the control link has expired")
        current = self._holder
        if current is not None and current.id != holder_id and not self._over(current, now):
            raise TakeoverRefused(self._session_id, "held",
                                  f"{current.label} is in control", current.label)
        since = current.since if current is not None and current.id == holder_id else now
        self._holder = Holder(holder_id, label, since, self._lease_end(now, expires_at),
                              expires_at)
        return self._holder

    def renew(self, holder_id: str) -> Holder:
        current = self.check(holder_id)
        self._holder = replace(current, until=self._lease_end(self._clock(),
                                                              current.expires_at))
        return self._holder

    def check(self, holder_id: str) -> Holder:
        """The holder, if `holder_id` it is and its lease runs; else TakeoverRefused
        `not_held`."""
        current = self._holder
        if current is None or current.id != holder_id or self._over(current, self._clock()):
            raise TakeoverRefused(self._session_id, "not_held", "this viewer is not in control")
        return current

    def release(self, holder_id: str) -> Holder:
        """Lets go of control; TakeoverRefused `not_held` unless `holder_id` holds it (a lease
        that ran out is released by `lapsed`, with its reason)."""
        current = self.check(holder_id)
        self._holder = None
        return current

    def lapsed(self) -> tuple[Holder, str] | None:
        """The holder whose lease or link ran out, now let go of, and why: `expired` (the
        link) or `lease` (not renewed: its gateway is gone)."""
        current, now = self._holder, self._clock()
        if current is None or not self._over(current, now):
            return None
        self._holder = None
        return current, "expired" if now >= current.expires_at else "lease"

    def deadline(self) -> float | None:
        """When the holder's lease runs out, if no renewal comes first."""
        return self._holder.until if self._holder is not None else None

    def clear(self) -> Holder | None:
        current, self._holder = self._holder, None
        return current

    def _lease_end(self, now: float, expires_at: float) -> float:
        return min(now + self._lease_s, expires_at)

    @staticmethod
    def _over(holder: Holder, now: float) -> bool:
        return now >= holder.until


@dataclass(slots=True, frozen=True)
class SessionHooks:
    """What a Takeover needs of its session (pipeline/session.py passes its own)."""

    state: Callable[[], SessionState]
    # Records a control change (and moves the session's workflow): the session's own
    # `_control_change(action, by, reason=...)`; raises ControlRefused in a state that
    # does not take it.
    change: Callable[..., None]
    page: Callable[[], Page | None]
    spawn: Callable[[Awaitable[Any], str], asyncio.Task[Any]]


class Takeover:
    """A session's person in control, if any (see the module's docstring)."""

    def __init__(self, session_id: str, hooks: SessionHooks, log: logging.LoggerAdapter[Any],
                 clock: Callable[[], float] = time.time, lease_s: float = LEASE_S) -> None:
        self._session_id = session_id
        self._hooks = hooks
        self._log = log
        self._clock = clock
        self.seat = ControlSeat(session_id, clock, lease_s)
        self._input = PageInput(hooks.page, hooks.spawn, log)
        self._paused_by_take = False
        self._watch: asyncio.Task[Any] | None = None
        self._watched_page: Page | None = None  # told of its new documents while held

    @property
    def driven_by(self) -> DrivenBy:
        return DrivenBy.PERSON if self.seat.holder is not None else DrivenBy.STEPS

    @property
    def holder_label(self) -> str | None:
        holder = self.seat.holder
        return holder.label if holder is not None else None

    def allows(self, action: ControlAction, state: SessionState) -> None:
        """Raises ControlRefused for what would run the workflow under a person's hands: a
        resume, or steps that would start an idle session, while someone is in control."""
        holder = self.seat.holder
        if holder is None:
            return
        if action is ControlAction.RESUME or (action is ControlAction.STEPS
                                               and state is SessionState.IDLE):
            raise ControlRefused(self._session_id, action.value,
                                 f"is driven by {holder.label} from the viewer; it runs its "
                                 "workflow again once they hand back")

    async def take(self, holder_id: str, label: str, expires_at: float) -> Holder:
        """`holder_id` takes control (see ControlSeat.take); a first take pauses a running
        workflow and records every keystroke from now on."""
        state = self._hooks.state()
        renewing = self.seat.holder is not None and self.seat.holder.id == holder_id
        if not renewing:
            lapsed = self.seat.lapsed()
            if lapsed is not None:
                await self._let_go(*lapsed)
        holder = self.seat.take(holder_id, label, expires_at)
        if renewing:
            self._rearm()
            return holder
        try:
            self._hooks.change(ControlAction.TAKE, label)
        except ControlRefused:
            self.seat.clear()
            raise
        self._paused_by_take = state is SessionState.RUNNING
        self._log.info("session %s: %s took control", self._session_id, label)
        await self._every_keystroke(True)
        self._rearm()
        return holder

    def renew(self, holder_id: str) -> Holder:
        holder = self.seat.renew(holder_id)
        self._rearm()
        return holder

    def deliver(self, holder_id: str, events: list[InputEvent]) -> None:
        """Queues `events` for the page, in order; TakeoverRefused unless `holder_id` holds
        control."""
        self.seat.check(holder_id)
        self._input.put(events)

    async def hand_back(self, holder_id: str, reason: str | None = None) -> None:
        """`holder_id` gives control back; `reason` when it did not ask itself (`closed`:
        its socket closed). TakeoverRefused `not_held` unless it holds control."""
        holder = self.seat.release(holder_id)
        await self._let_go(holder, reason)

    async def close(self) -> None:
        """The session stops: no hand-back to record, only the keys to let go of."""
        self.seat.clear()
        await self._input.close()

    async def _let_go(self, holder: Any, reason: str | None) -> None:
        await self._input.release_all()
        await self._every_keystroke(False)
        paused, self._paused_by_take = self._paused_by_take, False
        state = self._hooks.state()
        if state not in (SessionState.RUNNING, SessionState.PAUSED, SessionState.IDLE):
            return  # stopping: nothing to hand back to
        self._hooks.change(ControlAction.HAND_BACK, holder.label, reason=reason)
        self._log.info("session %s: %s handed back control%s", self._session_id, holder.label,
                       f" ({reason})" if reason else "")
        if paused and self._hooks.state() is SessionState.PAUSED:
            self._hooks.change(ControlAction.RESUME, holder.label)

    def _rearm(self) -> None:
        if self._watch is None or self._watch.done():
            self._watch = self._hooks.spawn(self._watch_lease(), "takeover-lease")

    async def _watch_lease(self) -> None:
        """Hands back when the holder's lease or link runs out."""
        while (deadline := self.seat.deadline()) is not None:
            await asyncio.sleep(max(0.05, deadline - self._clock()))
            lapsed = self.seat.lapsed()
            if lapsed is not None:
                await self._let_go(*lapsed)

    async def _every_keystroke(self, on: bool) -> None:
        """Every frame of the page records its inputs at every keystroke (`on`) or as
        before, and so does each document the page opens while someone is in control."""
        page = self._hooks.page()
        watched, self._watched_page = self._watched_page, page if on else None
        if watched is not None:
            watched.remove_listener("framenavigated", self._navigated)
        if page is None or page.is_closed():
            return
        if on:
            page.on("framenavigated", self._navigated)
        await asyncio.gather(*(self._sample(frame, on) for frame in page.frames))

    def _navigated(self, frame: Frame) -> None:
        self._hooks.spawn(self._sample(frame, True), "takeover-sampling")

    async def _sample(self, frame: Frame, on: bool) -> None:
        """A frame that does not answer in time (busy, navigating) keeps what it had."""
        try:
            await asyncio.wait_for(frame.evaluate(_KEYSTROKES_JS, on), _SAMPLING_S)
        except (TimeoutError, PlaywrightError) as exc:
            self._log.info("session %s: the frame at %s kept its input sampling: %s",
                           self._session_id, frame.url, describe_error(exc))


__all__ = ["LEASE_S", "RENEW_S", "ControlSeat", "Holder", "SessionHooks", "Takeover"]
