"""Workflow: order, failure, resume from a Checkpoint, a step interrupted by a crash, and
control: pause and resume at step boundaries, steps added, and both carried by a Checkpoint."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.errors import ControlRefused, StepFailed
from pipeline.models import Checkpoint, StepState, StepStatus
from pipeline.steps import MAX_STEPS, ClickStep, Step, WaitStep
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
    workflow.restore(Checkpoint(url="http://a.test/", step=1, steps=earlier, version=7))
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
    workflow.restore(Checkpoint(step=2, steps=done))
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


class Gated(Runner):
    """Steps named `slow` wait for `go`."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()
        self.started = asyncio.Event()

    async def run(self, step: Step) -> None:
        if isinstance(step, ClickStep) and step.selector == "slow":
            self.started.set()
            await self.go.wait()
        await super().run(step)


async def test_a_pause_lets_the_running_step_finish_and_starts_no_other() -> None:
    workflow = Workflow("s", steps("slow", "b", "c"))
    runner = Gated()
    task = asyncio.create_task(workflow.run(runner))
    await runner.started.wait()
    workflow.pause()
    runner.go.set()
    await asyncio.wait_for(task, 1)  # returns at the step boundary
    assert states(workflow) == ["done", "pending", "pending"] and workflow.position == 1
    assert runner.ran == ["slow"] and not workflow.done
    workflow.resume()
    await workflow.run(runner)
    assert runner.ran == ["slow", "b", "c"] and states(workflow) == ["done"] * 3


async def test_a_pause_and_resume_within_one_step_changes_nothing() -> None:
    workflow = Workflow("s", steps("slow", "b"))
    runner = Gated()
    task = asyncio.create_task(workflow.run(runner))
    await runner.started.wait()
    workflow.pause()
    workflow.resume()
    runner.go.set()
    await asyncio.wait_for(task, 1)
    assert runner.ran == ["slow", "b"] and workflow.done


async def test_steps_added_while_running_run_after_the_others() -> None:
    workflow = Workflow("s", steps("slow"))
    runner = Gated()
    task = asyncio.create_task(workflow.run(runner))
    await runner.started.wait()
    workflow.append(steps("more"))
    runner.go.set()
    await asyncio.wait_for(task, 1)
    assert runner.ran == ["slow", "more"] and [s.index for s in workflow.statuses] == [0, 1]


async def test_steps_added_while_paused_wait_for_the_resume() -> None:
    workflow = Workflow("s", steps("a"))
    workflow.pause()
    workflow.append(steps("b"))
    runner = Runner()
    await workflow.run(runner)
    assert runner.ran == [] and states(workflow) == ["pending", "pending"]
    workflow.resume()
    await workflow.run(runner)
    assert runner.ran == ["a", "b"]


async def test_steps_added_to_a_done_workflow_run_even_after_a_failed_step() -> None:
    workflow = Workflow("s", steps("fail", "skipped"))
    with pytest.raises(StepFailed):
        await workflow.run(Runner())
    workflow.append([*steps("x"), WaitStep(ms=0)])
    assert not workflow.done and workflow.position == 2
    runner = Runner()
    await workflow.run(runner)
    assert runner.ran == ["x", "wait"]
    assert states(workflow) == ["failed", "skipped", "done", "done"]
    assert [s.action for s in workflow.added] == ["click", "wait"]


def test_a_session_takes_at_most_max_steps_in_all() -> None:
    changes: list[int] = []
    workflow = Workflow("s", [WaitStep(ms=0)] * (MAX_STEPS - 2), lambda: changes.append(0))
    workflow.append([WaitStep(ms=0)] * 2)
    with pytest.raises(ControlRefused) as refused:
        workflow.append([WaitStep(ms=0)])
    assert str(refused.value) == (f"session s has {MAX_STEPS} steps and may have at most "
                                  f"{MAX_STEPS}: 1 more are too many")
    assert len(workflow.steps) == MAX_STEPS and len(changes) == 1, "the refused one changed nothing"


async def test_a_checkpoint_carries_the_added_steps_and_the_pause_to_a_new_workflow() -> None:
    first = Workflow("s", steps("a"))
    await first.run(Runner())
    first.append(steps("b", "c"))
    first.pause()
    checkpoint = Checkpoint.model_validate_json(first.checkpoint("http://a.test/", 3)
                                                .model_dump_json())  # as it travels
    second = Workflow("s", steps("a"))  # a new actor: its spec's steps only
    second.restore(checkpoint)
    assert [s.selector for s in second.steps] == ["a", "b", "c"]  # type: ignore[union-attr]
    assert second.paused and second.position == 1 and states(second)[0] == "done"
    runner = Runner()
    await second.run(runner)
    assert runner.ran == [], "still paused"
    second.resume()
    await second.run(runner)
    assert runner.ran == ["b", "c"] and second.checkpoint(None, 4).added == first.added
