"""CgroupCpuCaps: a hard CPU quota for one process, in a cgroup of its own.

A lower nice value (pipeline/renderer_priority.py) does not bound a renderer that keeps
a core busy: the kernel groups the scheduling of a whole session (autogroup, on by
default), and Chromium is its own session, so its renderers share one group's weight
against every Ray worker however their nice values differ; and a page rewriting its
DOM every frame keeps its compositor and raster threads busy too. bench/hostile.py
measured a canary beside a mutation flood at 5-7x its baseline p99 with the flood's
renderer at nice 10, using 85-99% of a core; with the renderer in a cgroup capped at a
tenth of a core 2.1x, at half a core 3.6x (bench/README.md; the default is half, as a
tenth kept a 200,000-element page from loading within the navigation timeout).

So a busy renderer is moved into `rrstream-renderer-<pid>`, a child of the cgroup it is
in, with a CFS quota of `share` of one core, and moved back (the child removed) when the
caller says (pipeline/renderer_priority.py: once it is calm, or no other page works).
cgroup v1 (the `cpu` controller's own hierarchy: `cpu.cfs_quota_us`) and v2 (`cpu.max`,
where the parent delegates the `cpu` controller) are both handled. Where the
cgroup file system is read-only (most unprivileged containers), or its paths are the
host's, not ours, `cap` raises CapUnavailable and the renderer is only niced: the caller
logs that once. A process that is gone raises ProcessLookupError.

Plain file operations under `root` (/sys/fs/cgroup) and `proc` (/proc), so the unit
tests run it on a directory of their own (tests/unit/test_cpu_caps.py).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_PERIOD_US = 100_000
_PREFIX = "rrstream-renderer-"


class CapUnavailable(OSError):
    """This node gives us no cgroup with a CPU quota."""


class CgroupCpuCaps:
    def __init__(self, root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc")) -> None:
        self._root = root
        self._proc = proc
        self._capped: dict[int, tuple[Path, Path]] = {}  # pid: (its cgroup, ours)
        self._closed = False

    @property
    def capped(self) -> list[int]:
        return list(self._capped)

    def cap(self, pid: int, share: float) -> None:
        """Limits `pid` (all its threads) to `share` of one core. Raises CapUnavailable when
        the node does not allow it, ProcessLookupError when the process is gone."""
        if pid in self._capped:
            return
        if self._closed:
            raise CapUnavailable("the browser host stopped")
        home, version = self._cgroup_of(pid)
        ours = home / f"{_PREFIX}{pid}"
        quota = max(1_000, round(share * _PERIOD_US))
        try:
            ours.mkdir(exist_ok=True)
        except OSError as exc:
            raise CapUnavailable(f"no cgroup can be made in {home}: {exc}") from exc
        try:
            if version == 1:
                (ours / "cpu.cfs_period_us").write_text(str(_PERIOD_US))
                (ours / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (ours / "cpu.max").write_text(f"{quota} {_PERIOD_US}")
            (ours / "cgroup.procs").write_text(str(pid))
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                ours.rmdir()
            raise
        except OSError as exc:
            with contextlib.suppress(OSError):
                ours.rmdir()
            raise CapUnavailable(f"the quota of {ours} could not be set: {exc}") from exc
        self._capped[pid] = (home, ours)

    def uncap(self, pid: int) -> None:
        """Back to the cgroup it came from; a process that is gone is only forgotten."""
        found = self._capped.pop(pid, None)
        if found is None:
            return
        home, ours = found
        with contextlib.suppress(ProcessLookupError, OSError):
            (home / "cgroup.procs").write_text(str(pid))
        with contextlib.suppress(OSError):
            ours.rmdir()

    def close(self) -> None:
        """Every capped process back; no cap after this."""
        self._closed = True
        for pid in list(self._capped):
            self.uncap(pid)

    def remove_stale(self, pid: int) -> int:
        """Removes the empty `rrstream-renderer-*` cgroups beside the one `pid` is in whose
        process is gone (an earlier browser host was killed before it could); how many."""
        try:
            home, _ = self._cgroup_of(pid)
        except OSError:
            return 0
        removed = 0
        for stale in home.glob(f"{_PREFIX}*"):
            if (self._proc / stale.name.removeprefix(_PREFIX)).exists():
                continue  # its renderer runs: another node's host on this machine has it
            with contextlib.suppress(OSError):
                stale.rmdir()
                removed += 1
        return removed

    def _cgroup_of(self, pid: int) -> tuple[Path, int]:
        """The directory of the cgroup `pid` is in, in the hierarchy that has the cpu
        controller, and that hierarchy's version."""
        try:
            text = (self._proc / str(pid) / "cgroup").read_text()
        except FileNotFoundError as exc:
            raise ProcessLookupError(pid) from exc
        entries = [line.split(":", 2)[1:] for line in text.splitlines()]  # controllers, path
        for controllers, path in entries:
            if "cpu" in controllers.split(","):
                for mount in self._v1_mounts():
                    home = mount / path.lstrip("/")
                    if (home / "cpu.cfs_quota_us").exists():
                        return home, 1
        for controllers, path in entries:
            if controllers == "":
                home = self._root / path.lstrip("/")
                try:
                    offered = (home / "cgroup.controllers").read_text().split()
                    if "cpu" in offered:
                        self._delegate(home)
                        return home, 2
                except OSError as exc:
                    raise CapUnavailable(f"cgroup {home} cannot hand down the cpu "
                                         f"controller: {exc}") from exc
        raise CapUnavailable(f"no cgroup with the cpu controller holds process {pid} here")

    def _v1_mounts(self) -> list[Path]:
        try:
            names = os.listdir(self._root)
        except OSError:
            return []
        return [self._root / name for name in sorted(names) if "cpu" in name.split(",")]

    def _delegate(self, home: Path) -> None:
        """cgroup v2 lets a child limit cpu only if its parent hands the controller down."""
        control = home / "cgroup.subtree_control"
        if "cpu" not in control.read_text().split():
            control.write_text("+cpu")


__all__ = ["CapUnavailable", "CgroupCpuCaps"]
