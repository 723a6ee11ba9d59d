"""Two gateway replicas: the viewers of one that dies (SIGKILL, `ray.kill`) or is rolled
reconnect to another and resume gap-free within 2 s. The scenario runs in its own Ray
(tests/integration/gateway_failover.py); one replica: test_gateway_restart.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.scenario import run_scenario

BACK_WITHIN_S = 2.0


@pytest.fixture(scope="module")
def failover(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_scenario("tests.integration.gateway_failover",
                        tmp_path_factory.mktemp("failover") / "result.json")


def fault(result: dict[str, Any], how: str) -> dict[str, Any]:
    return next(f for f in result["faults"] if f["how"] == how)


def assert_resumed_gap_free(outcome: list[dict[str, Any]], what: str) -> None:
    for viewer in outcome:
        assert all(r["resume"] == "continue" for r in viewer["reconnects"]), (what, viewer)
        assert not viewer["new_resets"] and not viewer["new_gaps"], (what, viewer)


@pytest.mark.parametrize("how", ["sigkill", "ray.kill"])
def test_a_dead_replicas_viewers_resume_on_the_other_within_2_s(
        failover: dict[str, Any], how: str) -> None:
    killed = fault(failover, how)
    spread, victim, outcome = killed["spread"], killed["victim"], killed["outcome"]
    took = [v["back_after_s"] for v in outcome]
    what = (f"replica {victim} killed by {how} with {spread[victim]} of {killed['viewers']} "
            f"viewers ({spread}); its viewers were streaming again after {took} s")
    assert len(spread) == 2 and min(spread.values()) > 0, what  # spread over both
    assert len(outcome) == spread[victim], what  # exactly its viewers had to move
    assert max(took) <= BACK_WITHIN_S, what
    assert_resumed_gap_free(outcome, what)


def test_a_rolled_deployment_closes_with_1012_and_every_viewer_resumes(
        failover: dict[str, Any]) -> None:
    rolled = fault(failover, "roll")
    outcome = rolled["outcome"]
    took = [r["took_s"] for v in outcome for r in v["reconnects"]]
    what = (f"{rolled['replicas_before']} replaced by {rolled['replicas_after']}; "
            f"{rolled['viewers']} viewers reconnected {len(took)} times, each after {took} s")
    assert not set(rolled["replicas_before"]) & set(rolled["replicas_after"]), what
    assert len(outcome) == rolled["viewers"], what
    for viewer in outcome:
        assert all(r["why"].startswith("closed with 1012") for r in viewer["reconnects"]), (
            what, viewer)
    assert max(took) <= BACK_WITHIN_S, what
    assert_resumed_gap_free(outcome, what)


def test_the_viewers_follow_the_session_to_its_end(failover: dict[str, Any]) -> None:
    assert set(failover["ends"]) == {"stopped"}, failover["ends"]
