"""Runs a scenario that needs a Ray of its own (`python -m MODULE OUT.json`: one process
holds one Ray, and the tests' shared Ray is already in this one) and returns its result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_scenario(module: str, out: Path, timeout_s: float = 600.0) -> dict[str, Any]:
    run = subprocess.run([sys.executable, "-m", module, str(out)], capture_output=True,
                         text=True, timeout=timeout_s, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-6000:]
    return json.loads(out.read_text())


__all__ = ["run_scenario"]
