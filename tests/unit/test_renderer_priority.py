"""A renderer that keeps a core busy gets a lower priority, and it back once calm (no
browser: a fake process table)."""

from __future__ import annotations

import os

from pipeline.renderer_priority import ChromiumRenderers, PriorityChange, RendererPriority
from tests.unit.test_event_rate import Clock


class FakeProcesses:
    def __init__(self, nices: dict[int, int]) -> None:
        self.cpu = {pid: 0.0 for pid in nices}
        self.nices = dict(nices)
        self.use = {pid: 0.0 for pid in nices}  # share of a core each uses per second
        self.may_raise = True

    def renderers(self) -> dict[int, float]:
        return dict(self.cpu)

    def nice(self, pid: int) -> int:
        return self.nices[pid]

    def set_nice(self, pid: int, value: int) -> None:
        if pid not in self.nices:
            raise ProcessLookupError(pid)
        if value < self.nices[pid] and not self.may_raise:
            raise PermissionError("needs CAP_SYS_NICE")
        self.nices[pid] = value

    def advance(self, clock: Clock, seconds: float) -> None:
        clock.now += seconds
        for pid, share in self.use.items():
            self.cpu[pid] += share * seconds


def run(priority: RendererPriority, procs: FakeProcesses, clock: Clock,
        seconds: int) -> list[PriorityChange]:
    changes = []
    for _ in range(seconds):
        procs.advance(clock, 1.0)
        changes += priority.look()
    return changes


def test_only_the_renderer_that_keeps_a_core_busy_is_lowered_and_raised_once_calm() -> None:
    clock, procs = Clock(), FakeProcesses({10: 0, 11: 0, 12: 5})
    priority = RendererPriority(procs, nice=10, clock=clock)
    procs.use.update({10: 1.0, 11: 0.5, 12: 0.2})  # a spinning page, a busy one, a quiet one
    priority.look()
    changes = run(priority, procs, clock, 2)
    assert changes == []  # not 3 s of it yet
    changes = run(priority, procs, clock, 10)
    assert [(c.pid, c.lowered, c.nice) for c in changes] == [(10, True, 10)]
    assert procs.nices == {10: 10, 11: 0, 12: 5} and priority.lowered == [10]
    procs.use[10] = 0.1  # the loop ended
    changes = run(priority, procs, clock, 4)
    assert changes == []  # not calm for 5 s yet
    changes = run(priority, procs, clock, 2)
    assert [(c.pid, c.lowered, c.nice) for c in changes] == [(10, False, 0)]
    assert procs.nices[10] == 0 and priority.lowered == []


def test_a_renderer_already_as_low_is_left_alone_and_one_that_went_is_forgotten() -> None:
    clock, procs = Clock(), FakeProcesses({20: 15, 21: 0})
    priority = RendererPriority(procs, nice=10, clock=clock)
    procs.use.update({20: 1.0, 21: 1.0})
    priority.look()
    changes = run(priority, procs, clock, 4)
    assert [c.pid for c in changes] == [21] and procs.nices[20] == 15
    del procs.cpu[21], procs.use[21], procs.nices[21]  # its page closed
    assert run(priority, procs, clock, 1) == [] and priority.lowered == []


def test_without_the_right_to_raise_it_a_renderer_stays_lowered() -> None:
    clock, procs = Clock(), FakeProcesses({30: 0})
    priority = RendererPriority(procs, nice=10, clock=clock)
    procs.use[30] = 1.0
    priority.look()
    run(priority, procs, clock, 4)
    procs.use[30], procs.may_raise = 0.0, False
    changes = run(priority, procs, clock, 8)
    # Asked, refused: it stays at the lower priority, and is not asked again.
    assert [(c.lowered, c.nice) for c in changes] == [(False, 10)]
    assert procs.nices[30] == 10 and priority.lowered == []


def test_the_renderers_of_a_process_tree_are_read_from_proc() -> None:
    # This test process has no renderer under it; its own pid is not one.
    assert ChromiumRenderers(os.getpid()).renderers() == {}
    assert ChromiumRenderers(2**22 + 7).renderers() == {}  # no such process
