"""The temp directories the Chromiums rrstream starts live in, owned by the process that
made them, so that nothing they write outlives them.

Playwright puts a Chromium's profile (`playwright_chromiumdev_profile-*`) and its downloads
and traces (`playwright-artifacts-*`) in its driver's temp directory and removes them only
when the browser closes normally: a killed driver, browser server or actor leaves them in
/tmp (24 of them after one test run with a few faults). So every driver and browser server
rrstream starts gets `TMPDIR` set to a directory of its own under
`<system temp>/rrstream-browser-tmp/`, which its owner removes when done.

The owner holds an exclusive `flock` on a file in the directory for as long as it lives;
the kernel lets go of it when the process ends, however it ends. Whoever starts next on
the machine (a host actor Ray restarted, the next session) takes the lock of every
directory it can: those are the dead owners', and it deletes them, ending any process
still running in them. A lock, not the owner's pid: the same /tmp is seen from other PID
namespaces (a container, the loopback cluster test's sshd), where that pid means nothing
or another process.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import psutil

_log = logging.getLogger(__name__)
# Earlier code kept directories named by pid in "rrstream-browsers" and
# "rrstream-browser-dirs"; each kind would take the other's for dead.
ROOT_NAME = "rrstream-browser-tmp"
_LOCK_NAME = ".owner"
_FRESH_S = 10.0  # a directory this young without its lock yet is being created
_KILL_WAIT_S = 3.0


def browsers_root() -> Path:
    return Path(tempfile.gettempdir()) / ROOT_NAME


class BrowserDir:
    """A directory under browsers_root() owned by this process while it holds the
    directory's lock. Named `<pid>-<purpose>-<random>` for people (the pid says nothing
    about ownership), and short: Chromium puts a Unix socket a few levels below it, and a
    socket's path may not pass 107 bytes."""

    def __init__(self, path: Path, lock: int | None = None) -> None:
        self.path = path
        self._lock = lock

    @classmethod
    def create(cls, purpose: str, root: Path | None = None) -> BrowserDir:
        """`purpose`: a word such as "host" or "session" (at most 8 letters)."""
        if not purpose.isalpha() or len(purpose) > 8:
            raise ValueError(f"a browser directory's purpose is a short word, not {purpose!r}")
        while True:  # 4 hex digits stay short (socket paths), and may repeat in a process
            path = (root or browsers_root()) / f"{os.getpid()}-{purpose}-{secrets.token_hex(2)}"
            try:
                path.mkdir(parents=True)
                break
            except FileExistsError:
                continue
        # Not inherited by the driver or server this process starts (PEP 446), so the
        # lock goes when this process does. Locked under another name first: a sweeper
        # that opened the lock file between its creation and its flock would take this
        # live directory for a dead one.
        locking = path / f"{_LOCK_NAME}.new"
        lock = os.open(locking, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(locking, path / _LOCK_NAME)
        return cls(path, lock)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (this process's environment by default) with every temp variable here."""
        env = dict(os.environ if base is None else base)
        for name in ("TMPDIR", "TMP", "TEMP"):
            env[name] = str(self.path)
        return env

    def remove(self) -> None:
        """Ends every process still running in the directory, then deletes it (and lets
        go of its lock). Blocking (a process scan, a few ms): call it off the event loop."""
        try:
            _end_processes_in(self.path)
            shutil.rmtree(self.path, ignore_errors=True)
            if self.path.exists():
                _log.warning("could not delete the browser temp directory %s", self.path)
        finally:
            lock, self._lock = self._lock, None
            if lock is not None:
                os.close(lock)


def _take_if_dead(entry: Path) -> BrowserDir | None:
    """The directory with its lock, if its owner is gone; None while it lives."""
    try:
        lock = os.open(entry / _LOCK_NAME, os.O_RDWR)
    except FileNotFoundError:
        try:  # no lock file: being created right now, or not one of ours
            young = time.time() - entry.stat().st_mtime < _FRESH_S
        except FileNotFoundError:
            return None
        return None if young or not entry.name[:1].isdigit() else BrowserDir(entry)
    except OSError:
        return None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        return None  # its owner holds it: alive
    return BrowserDir(entry, lock)


def sweep(root: Path | None = None) -> list[Path]:
    """Removes the directories whose owner died (and ends what still runs in them); returns
    them. Cheap when there are none: the process scan only happens for a dead owner."""
    root = root or browsers_root()
    try:
        entries = [e for e in root.iterdir() if e.is_dir()]
    except FileNotFoundError:
        return []
    dead = [d for d in map(_take_if_dead, entries) if d is not None]
    for directory in dead:
        directory.remove()
    if dead:
        _log.info("removed %d browser temp directories left by processes that died: %s",
                  len(dead), ", ".join(d.path.name for d in dead))
    return [d.path for d in dead]


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
