"""CPU accounting of the processes this benchmark started, and a check for stray Chromium.

Only descendants of this process are looked at: other people's Ray clusters and
browsers on the same machine are none of our business. Ray names its workers
`ray::<Class>` in their command line, which is how the actors are told apart.
"""

from __future__ import annotations

import os

import psutil

_RAY_GROUPS = {
    "BrowserSession": "session actor",
    "BrowserHost": "browser host actor",
    "Streamer": "streamer actor",
    "ServeReplica": "gateway replica",
    "ProxyActor": "serve proxy",
    "HAProxyManager": "haproxy manager actor",
    "ServeController": "serve controller",
    "RegistryActor": "registry actor",
    "DashboardAgent": "ray (gcs, raylet, agents)",
    "RuntimeEnvAgent": "ray (gcs, raylet, agents)",
}


def _group(proc: psutil.Process, root_pid: int) -> str:
    if proc.pid == root_pid:
        return "benchmark (client, driver)"
    cmdline = proc.cmdline()
    head = cmdline[0] if cmdline else proc.name()
    if head.startswith("ray::"):
        for key, group in _RAY_GROUPS.items():
            if key in head:
                return group
        return "ray (other workers)"
    if _is_chromium(proc, cmdline):
        if "--type=renderer" in cmdline:
            return "chromium renderer"
        return "chromium (browser, gpu, utility)"
    if "haproxy" in proc.name():
        return HAPROXY
    if len(cmdline) > 2 and cmdline[1] == "-m" and cmdline[2].startswith("bench."):
        return f"{cmdline[2]} (client process)"  # a helper process of a benchmark
    if "node" in proc.name() and any("playwright" in part for part in cmdline):
        return "playwright driver (node)"
    return "ray (gcs, raylet, agents)"


def _is_chromium(proc: psutil.Process, cmdline: list[str] | None = None) -> bool:
    name = proc.name().lower()
    head = (cmdline or proc.cmdline() or [""])[0].lower()
    return any(key in name or key in head for key in ("chrome", "chromium", "headless_shell"))


HAPROXY = "haproxy (binary)"
GATEWAY = "gateway replica"
SERVE_PROXY = "serve proxy"
_MACHINE = -1  # snapshot key of the whole machine's busy time
OTHERS = "not ours (other users of the machine)"


class CpuMeter:
    """CPU seconds per process group between two snapshots, as % of one core.

    The machine's total busy time is sampled too, so what other processes on this
    shared machine took in the same window shows up as its own group.
    """

    def __init__(self) -> None:
        self._root = psutil.Process()

    def snapshot(self) -> dict[int, tuple[str, float]]:
        machine = psutil.cpu_times()
        idle = machine.idle + getattr(machine, "iowait", 0.0)
        out: dict[int, tuple[str, float]] = {_MACHINE: (OTHERS, sum(machine) - idle)}
        for proc in [self._root, *self._root.children(recursive=True)]:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    out[proc.pid] = (_group(proc, self._root.pid), times.user + times.system)
            except psutil.Error:
                continue  # exited meanwhile
        return out

    @staticmethod
    def usage(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
              wall_s: float) -> dict[str, float]:
        """% of one core used by each group over `wall_s`; highest first."""
        groups: dict[str, float] = {}
        for pid, (group, cpu) in after.items():
            if pid != _MACHINE:
                start = before.get(pid, (group, 0.0))[1]
                groups[group] = groups.get(group, 0.0) + max(0.0, cpu - start)
        if _MACHINE in before and _MACHINE in after:
            busy = after[_MACHINE][1] - before[_MACHINE][1]
            groups[OTHERS] = max(0.0, busy - sum(groups.values()))
        return {g: round(100.0 * s / wall_s, 1)
                for g, s in sorted(groups.items(), key=lambda kv: -kv[1]) if wall_s > 0}


class ChromiumWatch:
    """Remembers every Chromium we started, to make sure none outlives the benchmark."""

    def __init__(self) -> None:
        self._root = psutil.Process()
        self._seen: dict[int, float] = {}

    def scan(self) -> None:
        for proc in self._root.children(recursive=True):
            try:
                if _is_chromium(proc):
                    self._seen[proc.pid] = proc.create_time()
            except psutil.Error:
                continue

    def survivors(self) -> list[psutil.Process]:
        alive = []
        for pid, created in self._seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.Error:
                continue
        return alive

    def kill_survivors(self) -> list[int]:
        """Kills, by pid, Chromium processes we started that are still running."""
        killed = []
        for proc in self.survivors():
            try:
                proc.kill()
                killed.append(proc.pid)
            except psutil.Error:
                continue
        return killed


def code_version() -> dict[str, object]:
    """The commit measured, and the files under pipeline/, serve/ and frontend/src/ that
    differ from it: others commit while a benchmark runs, so results name their code."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=10, check=False).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--", "pipeline", "serve", "frontend/src")
    return {"git_commit": git("rev-parse", "--short", "HEAD").strip() or None,
            "git_dirty": [line[3:] for line in dirty.splitlines()]}


def machine_info() -> dict[str, object]:
    import platform
    import sys

    import ray

    return {
        **code_version(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
        "ray": ray.__version__,
        "platform": platform.platform(),
    }


__all__ = ["GATEWAY", "HAPROXY", "OTHERS", "SERVE_PROXY", "ChromiumWatch", "CpuMeter",
           "code_version", "machine_info"]
