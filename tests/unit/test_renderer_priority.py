"""A renderer that keeps a core busy gets a lower priority, and it back once calm (no
browser: a fake process table)."""

from __future__ import annotations

import os

from pipeline.cpu_caps import CapUnavailable
from pipeline.renderer_priority import ChromiumRenderers, PriorityChange, RendererPriority
from tests.unit.test_event_rate import Clock


class FakeProcesses:
    def __init__(self, nices: dict[int, int]) -> None:
        self.cpu = {pid: 0.0 for pid in nices}
        self.nices = dict(nices)
        self.use = {pid: 0.0 for pid in nices}  # share of a core each uses per second
        self.may_raise = True
        self.caps: dict[int, float] = {}  # pid: share of a core it may use
        self.may_cap = True

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

    def cap(self, pid: int, share: float) -> None:
        if not self.may_cap:
            raise CapUnavailable("read-only file system")
        self.caps[pid] = share

    def uncap(self, pid: int) -> None:
        self.caps.pop(pid, None)

    def advance(self, clock: Clock, seconds: float) -> None:
        clock.now += seconds
        for pid, share in self.use.items():
            self.cpu[pid] += min(share, self.caps.get(pid, 1.0)) * seconds


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


def test_a_capped_renderer_that_still_spins_stays_capped_and_is_freed_once_calm() -> None:
    clock, procs = Clock(), FakeProcesses({40: 0, 41: 0})
    priority = RendererPriority(procs, nice=10, clock=clock, cap=0.1)
    procs.use.update({40: 1.0, 41: 0.2})
    priority.look()
    changes = run(priority, procs, clock, 4)
    assert [(c.pid, c.lowered, c.nice, c.cap) for c in changes] == [(40, True, 10, 0.1)]
    assert procs.caps == {40: 0.1}
    # Under its cap it uses a tenth of a core, under the 30% that is calm uncapped: it
    # still spins, so it keeps its cap.
    assert run(priority, procs, clock, 20) == [] and procs.caps == {40: 0.1}
    procs.use[40] = 0.02  # the page stopped spinning
    changes = run(priority, procs, clock, 7)
    assert [(c.pid, c.lowered, c.cap) for c in changes] == [(40, False, 0.0)]
    assert procs.caps == {} and procs.nices[40] == 0


def test_where_no_cap_is_allowed_a_busy_renderer_is_only_lowered() -> None:
    clock, procs = Clock(), FakeProcesses({50: 0, 51: 0})
    procs.may_cap = False
    priority = RendererPriority(procs, nice=10, clock=clock, cap=0.1)
    procs.use.update({50: 1.0, 51: 1.0})
    priority.look()
    changes = run(priority, procs, clock, 4)
    assert sorted((c.pid, c.nice, c.cap) for c in changes) == [(50, 10, 0.0), (51, 10, 0.0)]
    assert procs.caps == {}


def test_a_capped_renderer_that_went_is_uncapped() -> None:
    clock, procs = Clock(), FakeProcesses({60: 0, 61: 0})
    priority = RendererPriority(procs, nice=10, clock=clock, cap=0.1)
    procs.use.update({60: 1.0, 61: 0.05})
    priority.look()
    run(priority, procs, clock, 4)
    assert procs.caps == {60: 0.1}
    del procs.cpu[60], procs.use[60]
    run(priority, procs, clock, 1)
    assert procs.caps == {} and priority.lowered == []


def test_the_cap_is_for_the_others_a_renderer_alone_is_only_lowered() -> None:
    clock, procs = Clock(), FakeProcesses({70: 0, 71: 0})
    priority = RendererPriority(procs, nice=10, clock=clock, cap=0.25)
    procs.use.update({70: 1.0, 71: 0.0})  # a heavy page, and a blank one
    priority.look()
    changes = run(priority, procs, clock, 4)
    assert [(c.pid, c.nice, c.cap) for c in changes] == [(70, 10, 0.0)]
    assert procs.caps == {}
    procs.use[71] = 0.07  # another session's page starts working
    changes = run(priority, procs, clock, 2)
    assert [(c.pid, c.nice, c.cap) for c in changes] == [(70, 10, 0.25)]
    assert procs.caps == {70: 0.25}
    procs.use[71] = 0.0  # and stops: after 5 s the heavy page has the idle core again
    changes = run(priority, procs, clock, 4)
    assert changes == [] and procs.caps == {70: 0.25}
    changes = run(priority, procs, clock, 3)
    assert [(c.pid, c.lowered, c.nice, c.cap) for c in changes] == [(70, True, 10, 0.0)]
    assert procs.caps == {} and procs.nices[70] == 10 and priority.lowered == [70]


def test_two_spinning_pages_do_not_keep_each_other_capped() -> None:
    clock, procs = Clock(), FakeProcesses({80: 0, 81: 0, 82: 0})
    priority = RendererPriority(procs, nice=10, clock=clock, cap=0.5)
    procs.use.update({80: 1.0, 81: 1.0, 82: 0.05})
    priority.look()
    run(priority, procs, clock, 4)
    assert procs.caps == {80: 0.5, 81: 0.5}  # the third page works
    procs.use[82] = 0.0
    changes = run(priority, procs, clock, 7)
    assert sorted((c.pid, c.cap, c.recap) for c in changes) == [(80, 0.0, True),
                                                                (81, 0.0, True)]
    assert procs.caps == {} and sorted(priority.lowered) == [80, 81]


def test_the_renderers_of_a_process_tree_are_read_from_proc() -> None:
    # This test process has no renderer under it; its own pid is not one.
    assert ChromiumRenderers(os.getpid()).renderers() == {}
    assert ChromiumRenderers(2**22 + 7).renderers() == {}  # no such process
