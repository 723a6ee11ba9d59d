from __future__ import annotations

from pathlib import Path

from tests.integration.scenario import run_scenario


def test_three_nodes_spread_stream_and_survive_losing_one(tmp_path: Path) -> None:
    result = run_scenario("tests.integration.multinode", tmp_path / "result.json")
    assert len(set(result["nodes"].values())) >= 2 and result["lost"]
