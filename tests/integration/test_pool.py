from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("mode", ["queue", "refuse"])
def test_a_full_pool_queues_or_refuses(mode: str, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    run = subprocess.run([sys.executable, "-m", "tests.integration.pool_scenario", mode, str(out)],
                         capture_output=True, text=True, timeout=600,
                         cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr[-6000:]
    result = json.loads(out.read_text())
    if mode == "queue":
        assert "ray_rrstream_sessions" in result["metrics"]
