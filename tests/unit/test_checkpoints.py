"""CheckpointReporter: one report per change, on the next loop turn, versions growing."""

from __future__ import annotations

import asyncio

from pipeline.checkpoints import CheckpointReporter
from pipeline.control import ControlLog
from pipeline.models import Checkpoint, ControlAction
from pipeline.steps import WaitStep
from pipeline.workflow import Workflow


async def turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_a_burst_of_changes_is_one_report_and_nothing_new_is_none() -> None:
    sent: list[Checkpoint] = []
    url = ["http://a.test/"]
    reporter = CheckpointReporter("s", sent.append, lambda: url[0])
    workflow = Workflow("s", [WaitStep(ms=1), WaitStep(ms=1)])
    reporter.version = 41  # a resumed session goes on from its checkpoint's version
    reporter.changed(workflow)
    workflow.position = 1
    reporter.changed(workflow)
    await turn()
    assert [(c.version, c.step, c.url) for c in sent] == [(42, 1, "http://a.test/")]
    reporter.changed(workflow)
    await turn()
    assert len(sent) == 1, "nothing a resume needs changed"
    url[0] = "http://a.test/next"
    reporter.changed(workflow)
    await turn()
    assert [(c.version, c.url) for c in sent[1:]] == [(43, "http://a.test/next")]
    reporter.changed(workflow, force=True)  # the page was reopened after a crash
    await turn()
    assert [c.version for c in sent] == [42, 43, 44]
    reporter.stop()
    url[0] = "http://a.test/after"
    reporter.changed(workflow)
    await turn()
    assert len(sent) == 3


async def test_a_failing_supervisor_is_logged_not_raised(caplog) -> None:
    def broken(checkpoint: Checkpoint) -> None:
        raise ConnectionError("the registry is restarting")

    reporter = CheckpointReporter("s", broken, lambda: None)
    reporter.changed(Workflow("s", []))
    await turn()
    assert "reporting its checkpoint failed" in caplog.text
    assert "the registry is restarting" in caplog.text


async def test_control_changes_are_reported_at_once_with_the_log() -> None:
    sent: list[Checkpoint] = []
    log = ControlLog()
    reporter = CheckpointReporter("s", sent.append, lambda: None, log)
    workflow = Workflow("s", [WaitStep(ms=1)])
    workflow.pause()
    log.add(ControlAction.PAUSE, "key:abc")
    reporter.now(workflow)
    assert len(sent) == 1 and sent[0].paused and sent[0].control == log.list()
    workflow.append([WaitStep(ms=2)])
    log.add(ControlAction.STEPS, "api", steps=1)
    reporter.now(workflow)
    assert [len(c.added) for c in sent] == [0, 1]
    assert [c.action for c in sent[1].control] == ["pause", "steps"]
    reporter.changed(workflow)
    await turn()
    assert len(sent) == 2, "nothing changed since"
