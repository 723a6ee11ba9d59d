"""The head's GCS restarts under running sessions (GCS fault tolerance with an external
Redis): the scenario runs in its own Ray (tests/integration/gcs_restart.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.redis_server import missing
from tests.integration.scenario import run_scenario


def test_sessions_on_workers_stream_through_a_gcs_restart(tmp_path: Path) -> None:
    reason = missing()
    if reason:
        pytest.skip(reason)
    result = run_scenario("tests.integration.gcs_restart", tmp_path / "result.json")
    down = f"GCS down {result['gcs_down_s']} s"

    # The data path never touches the GCS: every viewer kept getting frames, without a gap
    # or a reset (nor, if it had to reconnect, anything but a gap-free resume).
    assert all(n > 0 for n in result["streamed_while_down"]), (down, result)
    assert all(n > 0 for n in result["streamed_after_restart"]), result
    for viewer in result["viewers"]:
        assert viewer["gaps"] == 0 and viewer["resets"] == ["join"], viewer
        assert all(resume == "continue" for _, resume in viewer["reconnects"]), viewer
        assert viewer["end"] == "stopped", viewer

    # The API kept answering in JSON: 2xx, or 503 with Retry-After; never a plain 500.
    for answer in result["answers_while_down"] + result["answers_after_restart"]:
        assert answer["status"] is not None, (down, answer)
        assert answer["json"], answer
        assert answer["status"] < 300 or (answer["status"] == 503 and answer["message"]
                                          and answer["retry_after"]), answer

    # Afterwards: listed as running where they ran, not restarted, stoppable; a session
    # asked for while the GCS was down started once it was back.
    assert result["listed_after_s"] < 30, f"listed again {result['listed_after_s']} s after"
    assert result["nodes_after"] == result["nodes_before"], result
    assert set(result["restarts_after"].values()) == {0}, result
    assert result["created_while_down"] in result["stopped"], result
    assert set(result["stopped"].values()) == {"stopped"}, result
    assert result["redis_keys"] > 0, "the GCS kept nothing in Redis"
