"""RendererPriority: a renderer that keeps a core busy runs at a lower CPU priority.

A page that never yields (an infinite loop; an alert or `window.open` loop once the page
guard makes those return at once), the snapshot of a huge DOM, or a page rewriting
thousands of elements every frame keeps its renderer on a core for as long as it goes
on. On a 2-core node that is half the machine, taken from every other session's
pipeline: bench/hostile.py measured a canary session's p99 at 3-9x its baseline beside
such pages. So the node's browser host looks at every renderer of its shared Chromium
once a second: one whose main thread was busy (running, or ready to run and waiting
for a core) over `busy_share` of the last `busy_s` gets `nice` (10 by default,
RRSTREAM_BUSY_RENDERER_NICE); one under `calm_share` for `calm_s` gets back the
priority it had. Busy, not CPU used: on a saturated node a spinning renderer gets
well under a core, and that is when it matters (/proc/<pid>/schedstat has both). A
lowered renderer still has an idle core to itself; it only yields when others want the
CPU (at nice 10 a tenth of a nice-0 process's share). Every renderer is judged alike,
whoever's page it renders: a page that needs a whole core for seconds is the one that
waits.

A lower priority alone does not bound such a renderer against Ray's processes (the kernel
schedules Chromium's whole session as one group: pipeline/cpu_caps.py), so a lowered
renderer is also capped at `cap` of one core (RRSTREAM_BUSY_RENDERER_CPU, half by
default) in a cgroup of its own where the node allows it, while another renderer is at
work (over 2% of a core): a quota is not work-conserving, and a heavy page alone on its
node has nobody to yield to. Without others for `calm_s` it loses the cap and keeps its
lower priority. Renderers lowered themselves are not "others": two spinning pages do not
keep each other capped. Calm, for a capped renderer, is under `calm_share` or half its
cap, whichever is less. Where cgroups are read-only it is only niced (logged once).

The deciding is plain Python over a `Processes` Protocol
(tests/unit/test_renderer_priority.py). `ChromiumRenderers` reads /proc and calls
setpriority on every thread, each given back the value it had. Without CAP_SYS_NICE a
lowered renderer cannot be raised again; it then stays lower (logged once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipeline.cpu_caps import CapUnavailable, CgroupCpuCaps

_log = logging.getLogger(__name__)
_INTERVAL_S = 1.0
_ACTIVE_SHARE = 0.02  # a renderer busier than this (share of wall time) is a page at work


class Processes(Protocol):
    def renderers(self) -> dict[int, float]:
        """Seconds each renderer's main thread was busy so far (ran, or waited to run),
        by pid."""
        ...

    def nice(self, pid: int) -> int: ...

    def set_nice(self, pid: int, value: int) -> None:
        """Raises OSError (ProcessLookupError, PermissionError) when it cannot."""
        ...

    def cap(self, pid: int, share: float) -> None:
        """At most `share` of one core from now on; OSError when the node does not allow
        it (pipeline/cpu_caps.py)."""
        ...

    def uncap(self, pid: int) -> None:
        """No cap any more (also for a renderer that is gone)."""
        ...


@dataclass(slots=True, frozen=True)
class PriorityChange:
    pid: int
    lowered: bool  # False: given back
    share: float  # of the span judged that its main thread was busy
    nice: int  # from now on
    cap: float = 0.0  # its CPU cap from now on, of one core; 0: none
    recap: bool = False  # only its cap changed (other pages began or stopped working)


@dataclass(slots=True)
class _Renderer:
    samples: list[tuple[float, float]] = field(default_factory=list)  # (clock, busy s)
    lowered_from: int | None = None
    capped: bool = False
    calm_since: float | None = None
    alone_since: float | None = None  # capped, and no other renderer at work since

    def recent_share(self) -> float:
        """Busy (ran or waited to run) share of the wall time between the last two looks."""
        if len(self.samples) < 2:
            return 0.0
        (t0, cpu0), (t1, cpu1) = self.samples[-2], self.samples[-1]
        return (cpu1 - cpu0) / (t1 - t0) if t1 > t0 else 0.0


class RendererPriority:
    def __init__(self, processes: Processes, nice: int = 10, busy_share: float = 0.8,
                 busy_s: float = 3.0, calm_share: float = 0.3, calm_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, cap: float = 0.0) -> None:
        """`cap`: a lowered renderer also gets at most this share of one core (0: none)."""
        self._processes = processes
        self._nice = nice
        self._cap = cap
        self._cannot_cap = False
        self._busy_share = busy_share
        self._busy_s = busy_s
        self._calm_share = calm_share
        self._calm_s = calm_s
        self._clock = clock
        self._seen: dict[int, _Renderer] = {}
        self._cannot_raise = False

    @property
    def lowered(self) -> list[int]:
        return [pid for pid, r in self._seen.items() if r.lowered_from is not None]

    def look(self) -> list[PriorityChange]:
        """One look at every renderer; what changed."""
        now = self._clock()
        current = self._processes.renderers()
        for gone in self._seen.keys() - current.keys():
            went = self._seen.pop(gone)
            if went.capped or went.lowered_from is not None:
                self._processes.uncap(gone)
        for pid, cpu in current.items():
            renderer = self._seen.setdefault(pid, _Renderer())
            renderer.samples.append((now, cpu))
            # Keep the newest sample at least busy_s old, and all after it.
            while len(renderer.samples) > 2 and renderer.samples[1][0] <= now - self._busy_s:
                renderer.samples.pop(0)
        at_work = {pid for pid, r in self._seen.items()
                   if r.lowered_from is None and r.recent_share() > _ACTIVE_SHARE}
        changes = []
        for pid, renderer in self._seen.items():
            change = self._judge(pid, renderer, now, bool(at_work - {pid}))
            if change is None and renderer.lowered_from is not None:
                change = self._recap(pid, renderer, now, bool(at_work - {pid}))
            if change is not None:
                changes.append(change)
        return changes

    def _recap(self, pid: int, renderer: _Renderer, now: float,
               others: bool) -> PriorityChange | None:
        """A cap is for the others' sake: a lowered renderer gets it while another page is
        at work, and loses it (keeping its lower priority) after calm_s without one."""
        if others:
            renderer.alone_since = None
            if renderer.capped or not self._capped(pid):
                return None
            renderer.capped = True
            return PriorityChange(pid, True, renderer.recent_share(), self._nice, self._cap,
                                  recap=True)
        if not renderer.capped:
            return None
        renderer.alone_since = renderer.alone_since if renderer.alone_since is not None else now
        if now - renderer.alone_since < self._calm_s:
            return None
        self._processes.uncap(pid)
        renderer.capped, renderer.alone_since = False, None
        return PriorityChange(pid, True, renderer.recent_share(), self._nice, 0.0, recap=True)

    def _judge(self, pid: int, renderer: _Renderer, now: float,
               others: bool) -> PriorityChange | None:
        samples = renderer.samples
        if len(samples) < 2:
            return None
        if renderer.lowered_from is None:
            (t0, cpu0), (t1, cpu1) = samples[0], samples[-1]
            if t1 - t0 < self._busy_s * 0.9:
                return None
            share = (cpu1 - cpu0) / (t1 - t0)
            if share < self._busy_share:
                return None
            try:
                before = self._processes.nice(pid)
                if before >= self._nice:
                    return None  # already as low (Chromium's own background priority, or ours)
                self._processes.set_nice(pid, self._nice)
            except OSError:
                return None  # it exited meanwhile
            renderer.lowered_from, renderer.calm_since = before, None
            renderer.capped = others and self._capped(pid)
            return PriorityChange(pid, True, share, self._nice,
                                  self._cap if renderer.capped else 0.0)
        share, t0 = renderer.recent_share(), samples[-2][0]
        # A capped renderer that still spins may read as busy as before (time held back by
        # the quota counts as waiting) or as its cap: calm is under either.
        calm_share = min(self._calm_share, self._cap / 2) if renderer.capped else (
            self._calm_share)
        if share >= calm_share:
            renderer.calm_since = None
            return None
        renderer.calm_since = renderer.calm_since if renderer.calm_since is not None else t0
        if now - renderer.calm_since < self._calm_s:
            return None
        back = renderer.lowered_from
        try:
            self._processes.set_nice(pid, back)
        except PermissionError:
            if not self._cannot_raise:
                _log.warning("renderer %d is calm again but stays at nice %d: raising a "
                             "priority needs CAP_SYS_NICE", pid, self._nice)
            self._cannot_raise = True
            back = self._nice
        except OSError:
            return None  # it exited meanwhile: the next look forgets (and uncaps) it
        if renderer.capped:
            self._processes.uncap(pid)
        renderer.capped, renderer.alone_since = False, None
        renderer.lowered_from = renderer.calm_since = None
        return PriorityChange(pid, False, share, back)

    def _capped(self, pid: int) -> bool:
        if not self._cap or self._cannot_cap:
            return False
        try:
            self._processes.cap(pid, self._cap)
        except ProcessLookupError:
            return False  # it exited meanwhile
        except CapUnavailable as exc:
            self._cannot_cap = True
            _log.warning("busy renderers are only run at a lower priority here, not capped "
                         "at %.0f%% of a core: %s", self._cap * 100, exc)
            return False
        except OSError as exc:
            _log.info("renderer %d was not capped: %s", pid, exc)
            return False
        return True

    async def run(self, interval_s: float = _INTERVAL_S) -> None:
        """Looks every `interval_s` until cancelled; logs each change."""
        while True:
            for change in await asyncio.to_thread(self.look):
                if change.recap and change.cap:
                    _log.info("renderer %d, still busy: capped at %.0f%% of a core, as other "
                              "pages are at work", change.pid, change.cap * 100)
                elif change.recap:
                    _log.info("renderer %d, still busy: its cap is lifted, as no other page "
                              "was at work for %.0f s (it stays at nice %d)", change.pid,
                              self._calm_s, change.nice)
                elif change.lowered:
                    capped = (f", and on at most {change.cap * 100:.0f}% of a core while "
                              "other pages are at work" if change.cap else "")
                    _log.warning("renderer %d keeps a core busy (%.0f%% of the last %.0f s): "
                                 "it runs at nice %d%s until it calms down", change.pid,
                                 change.share * 100, self._busy_s, change.nice, capped)
                else:
                    _log.info("renderer %d is calm again: back to nice %d", change.pid,
                              change.nice)
            await asyncio.sleep(interval_s)


class ChromiumRenderers:
    """The renderers of one Chromium (descendants of its browser process with
    `--type=renderer`), from /proc; their CPU caps in cgroups (pipeline/cpu_caps.py)."""

    def __init__(self, browser_pid: int, caps: CgroupCpuCaps | None = None) -> None:
        self._browser = browser_pid
        self._caps = caps if caps is not None else CgroupCpuCaps()
        self._thread_nices: dict[int, dict[int, int]] = {}  # lowered pid: tid: nice before

    def renderers(self) -> dict[int, float]:
        found: dict[int, float] = {}
        pending, seen = [self._browser], set()
        while pending:
            pid = pending.pop()
            if pid in seen:
                continue
            seen.add(pid)
            children = _children(pid)
            pending.extend(children)
            if pid != self._browser and _is_renderer(pid):
                busy = self._busy(pid)
                if busy is not None:
                    found[pid] = busy
        return found

    def nice(self, pid: int) -> int:
        return os.getpriority(os.PRIO_PROCESS, pid)

    def set_nice(self, pid: int, value: int) -> None:
        """Every thread's: Linux keeps a nice value per thread, and a renderer's compositor
        and raster threads work for its page as much as its main thread. Lowering keeps
        each thread's own value (Chromium runs some lower already) and is given back
        thread by thread; a thread started since gets `value`."""
        main = os.getpriority(os.PRIO_PROCESS, pid)  # ProcessLookupError: it is gone
        if value > main:
            before = self._thread_nices.setdefault(pid, {})
            for tid in _tasks(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    now = os.getpriority(os.PRIO_PROCESS, tid)
                    before.setdefault(tid, now)
                    if now < value:
                        os.setpriority(os.PRIO_PROCESS, tid, value)
            return
        before = self._thread_nices.pop(pid, {})
        os.setpriority(os.PRIO_PROCESS, pid, before.get(pid, value))  # PermissionError
        for tid in _tasks(pid):
            if tid != pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.setpriority(os.PRIO_PROCESS, tid, before.get(tid, value))

    def cap(self, pid: int, share: float) -> None:
        self._caps.cap(pid, share)

    def uncap(self, pid: int) -> None:
        self._caps.uncap(pid)
        if not Path(f"/proc/{pid}").exists():
            self._thread_nices.pop(pid, None)

    def close(self) -> None:
        """Every capped renderer back where it was."""
        self._caps.close()

    def _busy(self, pid: int) -> float | None:
        """Its main thread's time on a core plus its time waiting for one (schedstat, ns)."""
        try:
            ran, waited, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
        except (OSError, ValueError):
            return None
        return (int(ran) + int(waited)) / 1e9


def _tasks(pid: int) -> list[int]:
    """Its threads."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [pid]


def _children(pid: int) -> list[int]:
    """Children forked by any thread of `pid` (Chromium launches from several)."""
    out: list[int] = []
    for tid in _tasks(pid):
        try:
            out.extend(int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text()
                       .split())
        except OSError:
            continue
    return out


def _is_renderer(pid: int) -> bool:
    # A zygote's child sets its title over its argv: one string, the words apart by spaces.
    try:
        return b"--type=renderer" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(
            b"\0", b" ").split()
    except OSError:
        return False


__all__ = ["ChromiumRenderers", "PriorityChange", "Processes", "RendererPriority"]
