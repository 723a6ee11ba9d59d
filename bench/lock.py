"""One benchmark at a time on this machine: an exclusive lock on /tmp/rrstream-bench.lock.

The machine has 2 cores and is shared; two benchmarks measuring at once would each
measure the other. Every full measurement runs inside

    with bench_lock("bench.fanout"):
        ...

which takes `fcntl.flock(LOCK_EX)` on the lock file (created if missing), waiting for
whoever holds it, and keeps it until the block ends. The holder writes its pid, name
and start time into the file, so a waiting run can say whom it waits for
(`cat /tmp/rrstream-bench.lock`). The lock belongs to the open file, which child
processes do not inherit (Python opens files non-inheritable), and the kernel
releases it when the process exits, however it exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

LOCK_PATH = Path("/tmp/rrstream-bench.lock")


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def bench_lock(what: str, timeout_s: float | None = None,
               path: Path = LOCK_PATH) -> Iterator[float]:
    """Holds the benchmark lock for the block; yields the seconds spent waiting for it.

    Raises TimeoutError if `timeout_s` passes first (None: wait as long as it takes).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)  # others on the machine must be able to lock it too
        t0 = time.monotonic()
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    print(f"[bench] waiting for {path} (held by: {_holder(fd)}) …",
                          file=sys.stderr, flush=True)
                    announced = True
                if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                    raise TimeoutError(f"{path} still held after {timeout_s:.0f} s "
                                       f"by: {_holder(fd)}") from None
                time.sleep(0.5)
        waited = time.monotonic() - t0
        if announced:
            print(f"[bench] got {path} after {waited:.0f} s", file=sys.stderr, flush=True)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} {what} since {stamp}\n".encode(), 0)
        try:
            yield waited
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


__all__ = ["LOCK_PATH", "bench_lock"]
