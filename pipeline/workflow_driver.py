"""WorkflowDriver: runs a session's workflow on its page, and takes the control changes of
it: the REST API's pause, resume and added steps, and a viewer's take and hand-back
(pipeline/takeover.py decides those).

The Workflow (pipeline/workflow.py) keeps the steps and where they are; the driver keeps
the one task running them, so that a resume or added steps start a run only when none is
under way and the page is not being reopened after a crash (which runs them after).
Each control change is decided by pipeline/control.py `next_state`, written into the
stream (so a recording shows it) and reported to the supervisor at once (so a
replacement actor cannot miss it). The session's state is the coordinator's
(BrowserSession): the driver reads it and asks it to move.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pipeline.checkpoints import CheckpointReporter
from pipeline.control import ControlLog, control_batch, next_state
from pipeline.error_events import ErrorEvents
from pipeline.errors import NavigationFailed, RRStreamError, StepFailed
from pipeline.logs import Log
from pipeline.models import Checkpoint, ControlAction, SessionState
from pipeline.navigation import page_gone
from pipeline.protocol import PageBatch
from pipeline.session_browser import SessionBrowser
from pipeline.steps import Step
from pipeline.workflow import Workflow, run_step

_CRASH_NOTICE_S = 2.0  # a step's error can come a moment before its page's crash event


class WorkflowDriver:
    """`state()` and `move(state)` are the session's state machine; `on_done()` is called
    when a run ends with no step left while the session is running; `on_error(message)`
    when a step failed; `recovering()` says whether the page is being reopened;
    `receiver()` is where the session's batches go now."""

    def __init__(self, session_id: str, step_delay_s: float, checkpoints: CheckpointReporter,
                 control: ControlLog, steps: PageSteps, errors: ErrorEvents, log: Log, *,
                 state: Callable[[], SessionState],
                 move: Callable[[SessionState], None],
                 spawn: Callable[[Awaitable[Any], str], asyncio.Task[Any]],
                 receiver: Callable[[], Callable[[PageBatch], None]],
                 recovering: Callable[[], bool],
                 on_done: Callable[[], None],
                 on_error: Callable[[str], None],
                 allows: Callable[[ControlAction, SessionState], None] | None = None) -> None:
        self.session_id = session_id
        self.workflow = Workflow(session_id, [])  # replaced by `replace` when it starts
        self._control = control
        self._step_delay_s = step_delay_s
        self._checkpoints = checkpoints
        self._steps = steps
        self._errors = errors
        self._log = log
        self._state = state
        self._move = move
        self._spawn = spawn
        self._receiver = receiver
        self._recovering = recovering
        self._on_done = on_done
        self._on_error = on_error
        self._allows = allows  # raises when a person in control refuses the change
        self._running: asyncio.Task[None] | None = None

    def replace(self, steps: list[Step]) -> None:
        """The session's steps (its spec's, or the demo site's) before it starts."""
        self.workflow = Workflow(self.session_id, steps, self._steps_changed, self._step_delay_s)

    def restore(self, resume: Checkpoint) -> None:
        """Where the actor before this one was (BrowserSession.start's `resume`)."""
        self.workflow.restore(resume)
        self._control.restore(resume.control, resume.control_dropped)

    def run(self) -> None:
        """Runs the steps from where they are, if the session is running."""
        if self._state() is SessionState.RUNNING:
            self._running = self._spawn(self._run(), "workflow")

    def cancel(self) -> None:
        """The page crashed: the running step is cancelled, and runs again after `run`."""
        if self._running is not None:
            self._running.cancel()

    def change(self, action: ControlAction, by: str, steps: list[Step] | None = None,
               reason: str | None = None) -> None:
        """A pause, a resume, added steps (`steps`), or a person's take or hand-back, asked
        for by `by` (`reason`: why, if not asked); ControlRefused if the session's state
        allows none, TakeoverRefused if the person in control does not."""
        state = next_state(self.session_id, self._state(), action)
        if self._allows is not None:
            self._allows(action, self._state())
        if steps is not None:
            self.workflow.append(steps)  # refused past MAX_STEPS: nothing changed then
        elif state is SessionState.PAUSED:
            self.workflow.pause()  # a pause, or a take of a running workflow
        elif action is ControlAction.RESUME:
            self.workflow.resume()
        change = self._control.add(action, by, len(steps) if steps is not None else None,
                                   reason)
        self._receiver()(control_batch(change))
        if state is not self._state():
            self._move(state)
        self._checkpoints.now(self.workflow)
        self._log.info("session %s: %s by %s%s; now %s", self.session_id, action, by,
                       f" ({change.steps} steps)" if change.steps is not None else "",
                       self._state())
        if state is SessionState.RUNNING:
            self._drive()

    def _drive(self) -> None:
        """Runs the workflow on after a resume or added steps, unless a run is under way
        (it takes them up itself) or the page is being reopened (which runs it after)."""
        if (self._running is not None and not self._running.done()) or self._recovering():
            return
        if self.workflow.done:
            self._on_done()
        else:
            self.run()

    def _steps_changed(self) -> None:
        self._checkpoints.changed(self.workflow)

    async def _run(self) -> None:
        try:
            await self.workflow.run(self._steps)
        except StepFailed as exc:
            error = f"step {exc.index} ({exc.action}) failed: {exc.reason}"
            self._on_error(error)
            self._errors.add("step", error)
            self._log.warning("session %s: %s", self.session_id, error)
        if self.workflow.done and self._state() is SessionState.RUNNING:
            self._on_done()


class PageSteps:
    """Runs the session's steps on its current page (the Workflow's StepRunner); a `goto`
    that does not open its page is reported to `navigation_failed` as well as raised."""

    def __init__(self, browser: SessionBrowser,
                 navigation_failed: Callable[[NavigationFailed], Awaitable[None]]) -> None:
        self._browser = browser
        self._navigation_failed = navigation_failed

    async def run(self, step: Step) -> None:
        page = self._browser.page
        if page is None:
            raise RRStreamError("the page is being reopened")
        try:
            await run_step(page, step)
        except NavigationFailed as exc:
            explained = self._browser.explained(exc)
            await self._navigation_failed(explained)
            if explained is exc:
                raise
            raise explained from exc.__cause__

    async def interrupted(self, exc: Exception) -> bool:
        if not page_gone(exc):
            return False
        # The page's crash event cancels this task (and reruns the step) if it comes.
        await asyncio.sleep(_CRASH_NOTICE_S)
        return False


__all__ = ["PageSteps", "WorkflowDriver"]
