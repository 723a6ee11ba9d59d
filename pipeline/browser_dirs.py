"""The temp directories the Chromiums rrstream starts live in, owned by the process that
made them, so that nothing they write outlives them.

Playwright puts a Chromium's profile (`playwright_chromiumdev_profile-*`) and its downloads
and traces (`playwright-artifacts-*`) in its driver's temp directory and removes them only
when the browser closes normally: a killed driver, browser server or actor leaves them in
/tmp (24 of them after one test run with a few faults). So every driver and browser server
rrstream starts gets `TMPDIR` set to a directory of its own under
`<system temp>/rrstream-browser-dirs/`, which its owner removes when done. The directory is
named after the owning process (pid and start time), not the node: the same code then
works without Ray, and whoever starts next on the machine (a host actor Ray restarted, the
next session) sees that the owner is dead and sweeps the directory, ending any process
still running in it.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import psutil

_log = logging.getLogger(__name__)
# Not "rrstream-browsers": directories there were named by psutil's drifting create_time,
# and code of either kind would take the other's for dead and sweep it.
ROOT_NAME = "rrstream-browser-dirs"
_KILL_WAIT_S = 3.0


def browsers_root() -> Path:
    return Path(tempfile.gettempdir()) / ROOT_NAME


def _start_ticks(pid: int) -> str:
    """When process `pid` started, in clock ticks since boot (base 36): the kernel's own
    number, the same whoever reads it. (psutil's create_time() adds the boot time, which
    the kernel recomputes from the clock and which drifts by a second now and then: two
    processes could then disagree on whether a directory's owner is still the same
    process.) Raises ProcessLookupError when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime
    digits = ""
    while ticks:
        ticks, digit = divmod(ticks, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
    return digits or "0"


class BrowserDir:
    """A directory under browsers_root() owned by this process, named
    `<pid>-<start time>-<purpose>-<random>`. Short: Chromium puts a Unix socket a few levels
    below it, and a socket's path may not pass 107 bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, purpose: str, root: Path | None = None) -> BrowserDir:
        """`purpose`: a word such as "host" or "session" (at most 8 letters)."""
        if not purpose.isalpha() or len(purpose) > 8:
            raise ValueError(f"a browser directory's purpose is a short word, not {purpose!r}")
        me = os.getpid()
        path = (root or browsers_root()) / (
            f"{me}-{_start_ticks(me)}-{purpose}-{secrets.token_hex(2)}")
        path.mkdir(parents=True)
        return cls(path)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (this process's environment by default) with every temp variable here."""
        env = dict(os.environ if base is None else base)
        for name in ("TMPDIR", "TMP", "TEMP"):
            env[name] = str(self.path)
        return env

    def remove(self) -> None:
        """Ends every process still running in the directory, then deletes it. Blocking
        (a process scan, a few tens of ms): call it off the event loop."""
        _end_processes_in(self.path)
        shutil.rmtree(self.path, ignore_errors=True)
        if self.path.exists():
            _log.warning("could not delete the browser temp directory %s", self.path)


def _owner_alive(name: str) -> bool:
    pid_text, _, rest = name.partition("-")
    ticks = rest.partition("-")[0]
    try:
        pid = int(pid_text)
    except ValueError:
        return True  # not ours: leave it alone
    try:
        return _start_ticks(pid) == ticks
    except ProcessLookupError:
        return False
    except (OSError, IndexError, ValueError):
        return True  # unreadable: never end what might be alive


def sweep(root: Path | None = None) -> list[Path]:
    """Removes the directories whose owner died (and ends what still runs in them); returns
    them. Cheap when there are none: the process scan only happens for a dead owner."""
    root = root or browsers_root()
    try:
        entries = list(root.iterdir())
    except FileNotFoundError:
        return []
    dead = [entry for entry in entries if entry.is_dir() and not _owner_alive(entry.name)]
    for entry in dead:
        BrowserDir(entry).remove()
    if dead:
        _log.info("removed %d browser temp directories left by processes that died: %s",
                  len(dead), ", ".join(e.name for e in dead))
    return dead


def processes_in(path: Path) -> list[psutil.Process]:
    """Live processes that run in `path`: their command line names it (Chromium's
    --user-data-dir) or their TMPDIR is in it (Playwright's drivers and servers)."""
    needle = str(path)
    protected = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if process.pid in protected:
            continue
        try:
            if any(needle in arg for arg in process.info["cmdline"] or ()):
                found.append(process)
                continue
            tmpdir = process.environ().get("TMPDIR", "")
        except psutil.Error:
            continue
        if tmpdir == needle or tmpdir.startswith(needle + os.sep):
            found.append(process)
    return found


def _end_processes_in(path: Path) -> None:
    processes = processes_in(path)
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(processes, timeout=_KILL_WAIT_S)
    if processes:
        _log.warning("ended %d processes still running in %s%s", len(processes), path,
                     f" ({len(alive)} did not exit)" if alive else "")


__all__ = ["ROOT_NAME", "BrowserDir", "browsers_root", "processes_in", "sweep"]
