"""A session's workflow: typed steps run in order against its page, and how far they got.

`Workflow` keeps the steps' statuses and position and is resumable: after a crash of the
page (or of the session's actor, from the Checkpoint it reported) it runs on from the step
that was running, which starts again from its beginning. It can be paused (no step starts
until it is resumed; the one running finishes) and take more steps while it runs, is
paused or is done. `run_step` is the Playwright side.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from playwright.async_api import FrameLocator, Page

from pipeline.errors import ControlRefused, StepFailed, describe_error
from pipeline.models import Checkpoint, StepState, StepStatus
from pipeline.navigation import open_url
from pipeline.steps import (
    MAX_STEPS,
    ClickStep,
    FillStep,
    GotoStep,
    HoverStep,
    PressStep,
    ScrollStep,
    Step,
    TypeStep,
    WaitForStep,
    WaitStep,
)

# Outcomes a resumed workflow keeps for the steps before its position.
_SETTLED = (StepState.DONE, StepState.FAILED, StepState.SKIPPED)


class StepRunner(Protocol):
    """Runs one step against the session's page."""

    async def run(self, step: Step) -> None: ...

    async def interrupted(self, exc: Exception) -> bool:
        """Whether `exc` came from the page going away (a crash the session recovers
        from, after which the step runs again) rather than from the step itself."""
        ...


class Workflow:
    """The steps and their statuses. `on_change` is called whenever the position or a
    step's state changes (the session reports a Checkpoint then)."""

    def __init__(self, session_id: str, steps: list[Step],
                 on_change: Callable[[], None] = lambda: None, step_delay_s: float = 0.0) -> None:
        self.session_id = session_id
        self.steps = list(steps)
        self.statuses = [StepStatus(index=i, action=s.action) for i, s in enumerate(steps)]
        self.added: list[Step] = []  # appended after the first ones (in `steps` too)
        self.position = 0  # the step running or next; len(steps) once done
        self.paused = False  # run() returns before the next step starts
        self._on_change = on_change
        self._step_delay_s = step_delay_s

    @property
    def done(self) -> bool:
        return self.position >= len(self.steps)

    def pause(self) -> None:
        """No step starts until resume(); the one running, if any, finishes first."""
        self.paused = True
        self._on_change()

    def resume(self) -> None:
        """Steps may start again (the caller runs run() again if it returned)."""
        self.paused = False
        self._on_change()

    def append(self, steps: list[Step]) -> None:
        """`steps` run after the others: next, if the workflow is done (a failed step
        skipped the rest: the new ones run all the same). ControlRefused past MAX_STEPS."""
        if len(self.steps) + len(steps) > MAX_STEPS:
            raise ControlRefused(self.session_id, "steps", f"has {len(self.steps)} steps "
                                 f"and may have at most {MAX_STEPS}: {len(steps)} more are "
                                 "too many")
        self._extend(steps)
        self._on_change()

    def _extend(self, steps: list[Step]) -> None:
        first = len(self.steps)
        self.steps.extend(steps)
        self.added.extend(steps)
        self.statuses.extend(StepStatus(index=first + i, action=s.action)
                             for i, s in enumerate(steps))

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continues where `checkpoint` says: with the steps it says were added, paused if
        it was; the steps before its position keep the outcome they had, the one at its
        position runs again from its start (its attempts go on counting), and those after
        are pending."""
        self._extend(checkpoint.added)
        self.paused = checkpoint.paused
        self.position = max(0, min(checkpoint.step, len(self.steps)))
        for status, earlier in zip(self.statuses, checkpoint.steps, strict=False):
            if status.index < self.position and earlier.state in _SETTLED:
                status.state, status.error = earlier.state, earlier.error
                status.started_at, status.ended_at = earlier.started_at, earlier.ended_at
            if status.index <= self.position:
                status.attempts = earlier.attempts

    def checkpoint(self, url: str | None, version: int) -> Checkpoint:
        return Checkpoint(url=url, step=self.position, version=version,
                          steps=[s.model_copy() for s in self.statuses],
                          added=list(self.added), paused=self.paused)

    def interrupt(self) -> None:
        """The session is stopping: the running step is skipped, the rest stay pending."""
        if not self.done and self.statuses[self.position].state is StepState.RUNNING:
            status = self.statuses[self.position]
            status.state, status.ended_at = StepState.SKIPPED, time.time()
            self._on_change()

    async def run(self, runner: StepRunner) -> None:
        """Runs from the position to the end, or until paused: then it returns before the
        next step. A failed step marks the steps after it skipped and raises StepFailed.
        Cancelling leaves the running step RUNNING (the canceller says what becomes of it:
        interrupt() on stop, a rerun after a crash); so does an error `runner` calls an
        interruption, and run() then returns early."""
        while not self.done and not self.paused:
            status, step = self.statuses[self.position], self.steps[self.position]
            status.state, status.started_at = StepState.RUNNING, time.time()
            status.ended_at = status.error = None
            status.attempts += 1
            self._on_change()
            try:
                await runner.run(step)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if await runner.interrupted(exc):
                    return
                status.state, status.ended_at = StepState.FAILED, time.time()
                status.error = describe_error(exc)
                for rest in self.statuses[status.index + 1:]:
                    rest.state = StepState.SKIPPED
                self.position = len(self.steps)
                self._on_change()
                raise StepFailed(self.session_id, status.index, status.action,
                                 status.error) from exc
            status.state, status.ended_at = StepState.DONE, time.time()
            self.position += 1
            self._on_change()
            if self._step_delay_s and not self.done:
                await asyncio.sleep(self._step_delay_s)


async def run_step(page: Page, step: Step) -> None:
    """Runs one step; Playwright errors propagate for the caller to record, and a goto
    that does not open its page raises NavigationFailed."""
    scope: Page | FrameLocator = page.frame_locator(step.frame) if step.frame else page
    timeout = step.timeout_ms
    match step:
        case GotoStep():
            await open_url(page, str(step.url), wait_until=step.wait_until, timeout_ms=timeout)
        case ClickStep():
            await scope.locator(step.selector).click(timeout=timeout)
        case FillStep():
            await scope.locator(step.selector).fill(step.value, timeout=timeout)
        case TypeStep():
            await scope.locator(step.selector).press_sequentially(
                step.text, delay=step.delay_ms, timeout=timeout
            )
        case PressStep():
            await scope.locator(step.selector).press(step.key, timeout=timeout)
        case HoverStep():
            await scope.locator(step.selector).hover(timeout=timeout)
        case ScrollStep():
            await page.mouse.wheel(step.x, step.y)
        case WaitForStep():
            await scope.locator(step.selector).wait_for(state=step.state, timeout=timeout)
        case WaitStep():
            await asyncio.sleep(step.ms / 1000.0)
        case _:
            raise TypeError(f"unknown step {step!r}")


__all__ = ["StepRunner", "Workflow", "run_step"]
