"""NodeActors, the supervisor of each node's streamer and browser host, with fakes."""

from __future__ import annotations

import pytest

from pipeline.errors import ActorLost
from pipeline.nodes import ActorState, NodeActors
from tests.unit.control_fakes import FakeNodeFactory, FakePlacement, until


def supervisor() -> tuple[NodeActors, FakeNodeFactory, list[str], list[str]]:
    factory = FakeNodeFactory(FakePlacement({"n1": 1}))
    restarted: list[str] = []
    kinds: list[str] = []

    async def on_streamer_restart(node_id: str) -> None:
        restarted.append(node_id)

    return (NodeActors(factory, on_streamer_restart, on_restart=kinds.append,
                       check_every_s=0.01), factory, restarted, kinds)


async def test_each_actor_goes_from_not_created_to_alive_and_through_a_restart() -> None:
    nodes, factory, restarted, kinds = supervisor()
    assert nodes.states("n1").streamer is ActorState.NOT_CREATED
    nodes.start()
    try:
        nodes.streamer("n1")
        nodes.browser("n1")
        await until(lambda: nodes.states("n1").streamer is ActorState.ALIVE)
        streamer = factory.streamers["n1"]
        streamer.unreachable = True  # Ray is restarting it
        await until(lambda: nodes.states("n1").streamer is ActorState.RESTARTING)
        assert restarted == []
        streamer.restart()
        streamer.unreachable = False
        await until(lambda: restarted == ["n1"])
        assert nodes.states("n1").streamer is ActorState.ALIVE and kinds == ["streamer"]
        assert nodes.states("n1").browser is ActorState.ALIVE
    finally:
        await nodes.close()


async def test_a_streamer_dead_for_good_is_replaced_on_next_use_never_reused() -> None:
    nodes, factory, _, _ = supervisor()
    first = nodes.streamer("n1")
    await nodes.wait_streamer("n1", 1.0)
    factory.streamers["n1"].dead = True
    await nodes.check("n1")
    assert nodes.states("n1").streamer is ActorState.DEAD
    assert "n1" not in nodes.streamers()
    second = nodes.streamer("n1")
    assert second is not first
    assert await nodes.wait_streamer("n1", 1.0) == await second.instance()


async def test_the_actors_of_a_lost_node_are_dead_and_waiting_for_them_fails() -> None:
    nodes, factory, _, _ = supervisor()
    nodes.streamer("n1")
    await nodes.wait_streamer("n1", 1.0)
    factory.placement.lose_node("n1")
    await nodes.check("n1")
    assert nodes.states("n1").streamer is ActorState.DEAD
    with pytest.raises(ActorLost):
        await nodes.wait_streamer("n1", 1.0)


async def test_waiting_for_a_streamer_that_never_answers_times_out() -> None:
    nodes, factory, _, _ = supervisor()
    nodes.streamer("n1")
    factory.streamers["n1"].unreachable = True
    with pytest.raises(TimeoutError, match="did not answer within"):
        await nodes.wait_streamer("n1", 0.2)
