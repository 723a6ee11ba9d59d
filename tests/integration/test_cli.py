"""The `rrstream` command: the main job end to end, and the session commands."""

from __future__ import annotations

import json
import re
import time

import httpx
import psutil

from serve.cli import main
from tests.conftest import free_port
from tests.integration.rrstream_up import rrstream_up


def test_up_runs_the_demo_and_ctrl_c_leaves_no_chromium() -> None:
    port, dashboard_port = free_port(), free_port()
    chromium: list[psutil.Process] = []
    with rrstream_up("--port", str(port), "--dashboard-port", str(dashboard_port)) as up:
        output = up.output
        viewer = re.search(r"viewer:\s+(\S+)", output).group(1)
        assert viewer.startswith(f"http://127.0.0.1:{port}/?session=")
        assert f"Ray dashboard:  http://127.0.0.1:{dashboard_port}" in output
        assert "ray get-auth-token" in output  # the dashboard asks for the token
        session_id = viewer.rsplit("=", 1)[1]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = httpx.get(f"http://127.0.0.1:{port}/sessions/{session_id}").json()
            if info["events"] > 0 and info["state"] in ("running", "idle"):
                break
            time.sleep(0.5)
        assert info["state"] in ("running", "idle") and info["events"] > 0, info
        assert httpx.get(viewer).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{dashboard_port}/").status_code == 200
        chromium = [p for p in psutil.Process(up.process.pid).children(recursive=True)
                    if "chrom" in p.name().lower()]
        assert chromium, "the demo session's Chromium should be running"
    rest = up.rest
    assert up.process.returncode == 0, rest
    assert "[rrstream] stopped." in rest
    # Serve's access log stays in Ray's log files (the requests above would show here).
    assert "GET /sessions/{session_id} 200" not in output + rest  # Serve logs the route
    _, alive = psutil.wait_procs(chromium, timeout=10)
    assert not alive, f"Chromium left running: {[p.pid for p in alive]}"


def test_session_commands(stack, demo_site, capsys) -> None:
    gateway = ["session", "--gateway", stack.base_url]
    assert main([*gateway, "start", f"{demo_site.url}/list.html", "--name", "cli"]) == 0
    started = json.loads(capsys.readouterr().out)
    assert started["name"] == "cli"
    assert main([*gateway, "list"]) == 0
    assert started["id"] in {s["id"] for s in json.loads(capsys.readouterr().out)}
    assert main([*gateway, "show", started["id"]]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == started["id"]
    assert main([*gateway, "stop", started["id"]]) == 0
    assert json.loads(capsys.readouterr().out)["state"] in ("stopped", "stopping")

    assert main([*gateway, "start", "ftp://nope"]) == 1
    assert "url" in capsys.readouterr().err
    assert main([*gateway, "show", "missing"]) == 1
    assert "no session with id 'missing'" in capsys.readouterr().err
