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
in, with a CFS quota of `share` of one core, and moved back (the child removed) once it
is calm. cgroup v1 (the `cpu` controller's own hierarchy: `cpu.cfs_quota_us`) and v2
(`cpu.max`, where the parent delegates the `cpu` controller) are both handled. Where the
cgroup file system is read-only (most unprivileged containers) every call raises
OSError and the renderer is only niced: the caller logs that once.

Plain file operations under `root` (/sys/fs/cgroup) and `proc` (/proc), so the unit
tests run it on a directory of their own (tests/unit/test_cpu_caps.py).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_PERIOD_US = 100_000
_PREFIX = "rrstream-renderer-"


class CgroupCpuCaps:
    def __init__(self, root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc")) -> None:
        self._root = root
        self._proc = proc
        self._capped: dict[int, tuple[Path, Path]] = {}  # pid: (its cgroup, ours)

    @property
    def capped(self) -> list[int]:
        return list(self._capped)

    def cap(self, pid: int, share: float) -> None:
        """Limits `pid` (all its threads) to `share` of one core. Raises OSError when the
        node does not allow it (no writable cpu controller) or the process is gone."""
        if pid in self._capped:
            return
        home, version = self._cgroup_of(pid)
        ours = home / f"{_PREFIX}{pid}"
        quota = max(1_000, round(share * _PERIOD_US))
        ours.mkdir(exist_ok=True)
        try:
            if version == 1:
                (ours / "cpu.cfs_period_us").write_text(str(_PERIOD_US))
                (ours / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (ours / "cpu.max").write_text(f"{quota} {_PERIOD_US}")
            (ours / "cgroup.procs").write_text(str(pid))
        except OSError:
            with contextlib.suppress(OSError):
                ours.rmdir()
            raise
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
        for pid in list(self._capped):
            self.uncap(pid)

    def _cgroup_of(self, pid: int) -> tuple[Path, int]:
        """The directory of the cgroup `pid` is in, in the hierarchy that has the cpu
        controller, and that hierarchy's version."""
        lines = (self._proc / str(pid) / "cgroup").read_text().splitlines()
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "cpu" in controllers.split(","):
                for mount in self._v1_mounts():
                    home = mount / path.lstrip("/")
                    if (home / "cpu.cfs_quota_us").exists():
                        return home, 1
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                home = self._root / path.lstrip("/")
                if "cpu" in (self._root / "cgroup.controllers").read_text().split():
                    self._delegate(home)
                    return home, 2
        raise FileNotFoundError(f"no cgroup with the cpu controller holds process {pid}")

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


def remove_stale(root: Path = Path("/sys/fs/cgroup")) -> int:
    """Removes the empty `rrstream-renderer-*` cgroups an earlier browser host left (it was
    killed before it could); the number removed."""
    removed = 0
    with contextlib.suppress(OSError):
        for stale in root.glob(f"**/{_PREFIX}*"):
            if Path(f"/proc/{stale.name.removeprefix(_PREFIX)}").exists():
                continue  # its renderer runs: another node's host on this machine has it
            with contextlib.suppress(OSError):
                stale.rmdir()
                removed += 1
    return removed


__all__ = ["CgroupCpuCaps", "remove_stale"]
