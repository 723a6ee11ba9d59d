"""Ray's own CLI from a second shell against the embedded Ray of `rrstream up`: the commands
it prints work as printed (Ray 2.60's token authentication on, another Ray on the machine
or not), and without RAY_AUTH_MODE=token they fail with an authentication error. The state
API (`ray list actors`) needs the dashboard, which `rrstream up` starts."""

from __future__ import annotations

import os
import re
import subprocess

from tests.conftest import free_port
from tests.integration.rrstream_up import rrstream_up

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
    with rrstream_up("--no-demo", "--port", str(port), "--dashboard-port", str(dashboard_port),
                     env=SHELL_ENV) as up:
        commands = re.findall(r"^\[rrstream\]\s+(RAY_AUTH_MODE=token \S+/ray .+)$", up.output,
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
        assert "AuthenticationError" in refused.stderr, refused.stderr[-2000:]
    assert up.process.returncode == 0, up.rest
