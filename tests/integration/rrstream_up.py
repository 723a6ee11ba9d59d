"""`rrstream up` for real, in a process of its own, for the tests of the command itself."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

_BANNER_END = "Ctrl-C stops everything"


@dataclass
class RunningUp:
    process: subprocess.Popen[str]
    output: str = ""  # what it printed until it was up
    rest: str = ""  # what it printed after its Ctrl-C


@contextlib.contextmanager
def rrstream_up(*args: str, env: Mapping[str, str] | None = None,
                timeout_s: float = 120.0) -> Iterator[RunningUp]:
    """Runs `rrstream up ARGS`, yields once it says it is up, and Ctrl-C's it when the block
    ends (its exit code and last words are then in `process.returncode` and `rest`)."""
    rrstream = Path(sys.executable).parent / "rrstream"
    process = subprocess.Popen([str(rrstream), "up", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env={**(os.environ if env is None else env),
                                    "PYTHONUNBUFFERED": "1"})
    up = RunningUp(process)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, "rrstream up exited early:\n" + "".join(lines)
            lines.append(line)
            if _BANNER_END in line:
                break
        up.output = "".join(lines)
        assert _BANNER_END in up.output, f"not up within {timeout_s:g} s:\n{up.output}"
        yield up
    finally:
        process.send_signal(signal.SIGINT)
        up.rest, _ = process.communicate(timeout=120)


__all__ = ["RunningUp", "rrstream_up"]
