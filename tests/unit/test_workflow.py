"""Workflow: order, failure, resume from a Checkpoint, and a step interrupted by a crash."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.errors import StepFailed
from pipeline.models import Checkpoint, StepState, StepStatus
from pipeline.steps import ClickStep, Step, WaitStep
from pipeline.workflow import Workflow


class Runner:
    """Runs steps by selector: `fail` raises, `gone` raises like a crashed page, `hang`
    waits until cancelled."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.gone_is_interruption = True

    async def run(self, step: Step) -> None:
        name = step.selector if isinstance(step, ClickStep) else "wait"
        self.ran.append(name)
        if name == "fail":
            raise ValueError("no such element\nCall log: …")
        if name == "gone":
            raise ConnectionError("the page went away")
        if name == "hang":
            await asyncio.Event().wait()

    async def interrupted(self, exc: Exception) -> bool:
        return isinstance(exc, ConnectionError) and self.gone_is_interruption


def steps(*names: str) -> list[Step]:
    return [ClickStep(selector=n) for n in names]


def states(workflow: Workflow) -> list[str]:
    return [s.state.value for s in workflow.statuses]


async def test_steps_run_in_order_and_every_change_is_told() -> None:
    changes: list[int] = []
    workflow = Workflow("s", [*steps("a", "b"), WaitStep(ms=1)],
                        on_change=lambda: changes.append(0))
    runner = Runner()
    await workflow.run(runner)
    assert runner.ran == ["a", "b", "wait"] and workflow.done
    assert states(workflow) == ["done"] * 3
    assert [s.attempts for s in workflow.statuses] == [1, 1, 1]
    assert len(changes) == 6  # each step started and ended


async def test_a_failed_step_skips_the_rest_and_raises() -> None:
    workflow = Workflow("s", steps("a", "fail", "c"))
    with pytest.raises(StepFailed) as info:
        await workflow.run(Runner())
    assert (info.value.index, info.value.action, info.value.reason) == (1, "click",
                                                                        "no such element")
    assert states(workflow) == ["done", "failed", "skipped"]
    assert workflow.statuses[1].error == "no such element" and workflow.done


async def test_a_resumed_workflow_keeps_earlier_outcomes_and_reruns_the_running_step() -> None:
    earlier = [StepStatus(index=0, action="click", state=StepState.DONE, started_at=1.0,
                          ended_at=2.0, attempts=1),
               StepStatus(index=1, action="click", state=StepState.RUNNING, started_at=3.0,
                          attempts=1),
               StepStatus(index=2, action="click")]
    workflow = Workflow("s", steps("a", "b", "c"))
    workflow.resume(Checkpoint(url="http://a.test/", step=1, steps=earlier, version=7))
    runner = Runner()
    await workflow.run(runner)
    assert runner.ran == ["b", "c"], "step 0 was done; step 1 runs again from its start"
    assert states(workflow) == ["done"] * 3
    assert workflow.statuses[0].ended_at == 2.0
    assert [s.attempts for s in workflow.statuses] == [1, 2, 1]
    checkpoint = workflow.checkpoint("http://a.test/x", 8)
    assert (checkpoint.step, checkpoint.version, checkpoint.url) == (3, 8, "http://a.test/x")


async def test_a_resume_past_the_end_runs_nothing() -> None:
    done = [StepStatus(index=0, action="click", state=StepState.FAILED, error="x"),
            StepStatus(index=1, action="click", state=StepState.SKIPPED)]
    workflow = Workflow("s", steps("a", "b"))
    workflow.resume(Checkpoint(step=2, steps=done))
    runner = Runner()
    await workflow.run(runner)
    assert runner.ran == [] and states(workflow) == ["failed", "skipped"]


async def test_an_interrupted_step_stays_running_and_runs_again() -> None:
    workflow = Workflow("s", steps("a", "gone", "c"))
    runner = Runner()
    await workflow.run(runner)  # returns early: the page went away
    assert states(workflow) == ["done", "running", "pending"] and workflow.position == 1
    runner.ran.clear()
    workflow.steps[1] = ClickStep(selector="b")  # the reopened page has what it needs
    await workflow.run(runner)
    assert runner.ran == ["b", "c"] and workflow.statuses[1].attempts == 2


async def test_an_error_that_is_no_interruption_fails_the_step() -> None:
    workflow = Workflow("s", steps("gone"))
    runner = Runner()
    runner.gone_is_interruption = False
    with pytest.raises(StepFailed):
        await workflow.run(runner)
    assert states(workflow) == ["failed"]


async def test_cancelling_leaves_the_step_to_the_canceller() -> None:
    workflow = Workflow("s", steps("hang", "b"))
    task = asyncio.create_task(workflow.run(Runner()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert states(workflow) == ["running", "pending"]
    workflow.interrupt()  # the session stops
    assert states(workflow) == ["skipped", "pending"]
