"""A process capped in a cgroup of its own and given back, on a directory laid out as
/sys/fs/cgroup and /proc are (cgroup v1 and v2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cpu_caps import CapUnavailable, CgroupCpuCaps

PID = 4321


def proc_with(tmp_path: Path, cgroup_lines: str) -> Path:
    proc = tmp_path / "proc"
    (proc / str(PID)).mkdir(parents=True)
    (proc / str(PID) / "cgroup").write_text(cgroup_lines)
    return proc


def test_v1_a_child_of_the_cgroup_it_was_in_with_a_quota_then_back_and_removed(
        tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    home = root / "cpu,cpuacct" / "ray"
    home.mkdir(parents=True)
    (home / "cpu.cfs_quota_us").write_text("-1")
    proc = proc_with(tmp_path, "4:memory:/ray\n2:cpu,cpuacct:/ray\n0::/\n")
    caps = CgroupCpuCaps(root, proc)
    caps.cap(PID, 0.1)
    ours = home / f"rrstream-renderer-{PID}"
    assert (ours / "cpu.cfs_quota_us").read_text() == "10000"
    assert (ours / "cpu.cfs_period_us").read_text() == "100000"
    assert (ours / "cgroup.procs").read_text() == str(PID)
    assert caps.capped == [PID]
    (ours / "cpu.cfs_quota_us").unlink()  # the kernel's files go with the directory
    (ours / "cpu.cfs_period_us").unlink()
    (ours / "cgroup.procs").unlink()
    caps.uncap(PID)
    assert (home / "cgroup.procs").read_text() == str(PID)
    assert not ours.exists() and caps.capped == []


def test_v2_the_controller_is_handed_down_and_the_quota_written_as_cpu_max(
        tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    home = root / "system.slice" / "ray.service"
    home.mkdir(parents=True)
    (home / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")  # offered
    (home / "cgroup.subtree_control").write_text("")
    proc = proc_with(tmp_path, "0::/system.slice/ray.service\n")
    CgroupCpuCaps(root, proc).cap(PID, 0.25)
    assert (home / "cgroup.subtree_control").read_text() == "+cpu"
    assert (home / f"rrstream-renderer-{PID}" / "cpu.max").read_text() == "25000 100000"


def test_without_a_cpu_controller_it_says_so_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("memory pids\n")  # cpu not handed down
    proc = proc_with(tmp_path, "0::/\n")
    with pytest.raises(CapUnavailable, match="no cgroup with the cpu controller"):
        CgroupCpuCaps(root, proc).cap(PID, 0.1)
    assert list(root.iterdir()) == [root / "cgroup.controllers"]


def test_a_process_that_is_gone_is_told_apart_from_a_node_without_cgroups(
        tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    (root / "cpu").mkdir(parents=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    with pytest.raises(ProcessLookupError):
        CgroupCpuCaps(root, tmp_path / "proc").cap(PID, 0.1)  # no /proc/<pid>


def test_after_close_nothing_is_capped(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    (root / "cpu").mkdir(parents=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    caps = CgroupCpuCaps(root, proc_with(tmp_path, "3:cpu:/\n"))
    caps.close()
    with pytest.raises(CapUnavailable):
        caps.cap(PID, 0.1)
    assert not (root / "cpu" / f"rrstream-renderer-{PID}").exists()


def test_stale_cgroups_of_gone_renderers_are_removed_those_of_live_ones_kept(
        tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    home = root / "cpu"
    home.mkdir(parents=True)
    (home / "cpu.cfs_quota_us").write_text("-1")
    proc = proc_with(tmp_path, "3:cpu:/\n")
    gone = home / "rrstream-renderer-999999999"  # above any pid_max
    live = home / f"rrstream-renderer-{PID}"  # proc_with made /proc/<PID>
    gone.mkdir()
    live.mkdir()
    assert CgroupCpuCaps(root, proc).remove_stale(PID) == 1
    assert not gone.exists() and live.exists()
