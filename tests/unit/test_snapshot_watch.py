"""SnapshotWatch against a fake recorder: what it reports, and what it retries."""

from __future__ import annotations

import asyncio

from pipeline.recorder import RecorderState
from pipeline.snapshot_watch import SnapshotWatch


class Recorder:
    """Answers `states` in turn (the last one from then on); "busy" never answers."""

    def __init__(self, *states: RecorderState | None | str) -> None:
        self.states = list(states)
        self.calls: list[str] = []

    async def state(self) -> RecorderState | None:
        self.calls.append("state")
        answer = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if answer == "busy":
            await asyncio.Event().wait()
        assert not isinstance(answer, str)
        return answer

    async def restart(self) -> None:
        self.calls.append("restart")

    async def inject(self) -> None:
        self.calls.append("inject")


OK = RecorderState(started=True, snapshots=1, failure=None)
NONE_YET = RecorderState(started=True, snapshots=0, failure=None)


def watch(problems: list[str | None]) -> SnapshotWatch:
    return SnapshotWatch(0.01, problems.append, answer_timeout_s=0.05)


async def test_a_recorded_page_costs_one_look_and_no_report() -> None:
    problems: list[str | None] = []
    recorder = Recorder(OK)
    await watch(problems).watch(recorder, "http://a.test/")
    assert problems == [] and recorder.calls == ["state"]


async def test_no_snapshot_restarts_rrweb_and_the_recovery_is_told() -> None:
    problems: list[str | None] = []
    recorder = Recorder(NONE_YET, OK)
    await watch(problems).watch(recorder, "http://a.test/")
    assert recorder.calls == ["state", "restart", "state"]
    assert problems == ["no rrweb snapshot 0.01 s after loading http://a.test/: rrweb did "
                        "not take one", None]


async def test_a_recorder_missing_from_the_page_is_injected() -> None:
    problems: list[str | None] = []
    recorder = Recorder(None, OK)
    await watch(problems).watch(recorder, "http://a.test/")
    assert recorder.calls == ["state", "inject", "state"]
    assert "the recorder was not in the page" in str(problems[0])


async def test_a_failure_inside_the_recorder_is_reported_with_its_message() -> None:
    problems: list[str | None] = []
    failed = RecorderState(started=True, snapshots=1, failure="MutationObserver is not defined")
    recorder = Recorder(failed, OK)
    await watch(problems).watch(recorder, "http://a.test/")
    assert problems[0] == ("the recorder failed on http://a.test/: MutationObserver is not "
                           "defined")
    assert recorder.calls == ["state", "restart", "state"]


async def test_a_busy_page_is_reported_and_looked_at_again_without_a_restart() -> None:
    problems: list[str | None] = []
    recorder = Recorder("busy", "busy", OK)
    await watch(problems).watch(recorder, "http://a.test/")
    assert recorder.calls == ["state", "state", "state"]
    assert "its main thread is busy" in str(problems[0]) and problems[1:] == [None]


async def test_after_two_restarts_it_only_looks_until_a_snapshot_comes() -> None:
    problems: list[str | None] = []
    recorder = Recorder(NONE_YET, NONE_YET, NONE_YET, NONE_YET, NONE_YET, OK)
    await watch(problems).watch(recorder, "http://a.test/")
    assert recorder.calls == ["state", "restart", "state", "restart", "state", "state",
                              "state", "state"]
    assert problems[1].endswith("still so after 2 restarts of the recorder")
    assert problems[2] is None and len(problems) == 3, "each problem is told once"
