from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_three_nodes_spread_stream_and_survive_losing_one(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    run = subprocess.run([sys.executable, "-m", "tests.integration.multinode", str(out)],
                         capture_output=True, text=True, timeout=600,
                         cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr[-6000:]
    result = json.loads(out.read_text())
    assert len(set(result["nodes"].values())) >= 2 and result["lost"]
