"""Ray's own CLI from a second shell against the embedded Ray of `rrstream up`: the commands
it prints work as printed (Ray 2.60's token authentication on, another Ray on the machine
or not), and without RAY_AUTH_MODE=token they fail with an authentication error. The state
API (`ray list actors`) needs the dashboard, which `rrstream up` starts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port

# Shells of their own: nothing a Ray started by this process put in its environment (the
# test stack's RAY_AUTH_MODE=token, for one). RRSTREAM_RECORDINGS_DIR stays: tests record
# into a temporary directory.
SHELL_ENV = {k: v for k, v in os.environ.items()
             if not k.startswith("RAY_")} | {"RAY_USAGE_STATS_ENABLED": "0"}


def shell(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                          timeout=120, env=SHELL_ENV)


def test_the_ray_cli_commands_rrstream_up_prints_work_from_another_shell() -> None:
    port, dashboard_port = free_port(), free_port()
    rrstream = Path(sys.executable).parent / "rrstream"
    process = subprocess.Popen(
        [str(rrstream), "up", "--no-demo", "--port", str(port),
         "--dashboard-port", str(dashboard_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**SHELL_ENV, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, "rrstream up exited early:\n" + "".join(lines)
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        output = "".join(lines)
        commands = re.findall(r"^\[rrstream\]\s+(RAY_AUTH_MODE=token \S+/ray .+)$", output,
                              re.MULTILINE)
        status, actors = (next(c for c in commands if f" {verb} " in c)
                          for verb in ("status", "list actors"))

        shown = shell(status)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "browser" in shown.stdout and "Active:" in shown.stdout, shown.stdout
        listed = shell(actors)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        for name in ("registry", "SERVE_CONTROLLER_ACTOR", "SERVE_REPLICA::rrstream#Gateway"):
            assert name in listed.stdout, listed.stdout

        # What the README warns about: the same command without the token mode.
        refused = shell(status.removeprefix("RAY_AUTH_MODE=token "))
        assert refused.returncode != 0
        assert "Authentication" in refused.stderr or "auth" in refused.stderr.lower(), (
            refused.stderr[-2000:])
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
    assert process.returncode == 0, rest
