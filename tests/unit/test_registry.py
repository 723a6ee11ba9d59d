"""The registry's decisions with fakes of Ray (tests/unit/control_fakes.py): queue order,
warm spares, stop while placing, every restart path, and adoption by a restarted registry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.errors import ControlRefused, SessionNotFound, StreamUnavailable
from pipeline.models import Checkpoint, SessionSpec, SessionState, StepStatus
from pipeline.nodes import NodeActors
from pipeline.registry import SessionRegistry
from pipeline.steps import WaitStep
from tests.unit.control_fakes import (
    FakeNodeFactory,
    FakePlacement,
    FakeSessionActor,
    MemoryRecordStore,
    until,
)

SPEC = SessionSpec(url="http://127.0.0.1:9/")


@dataclass
class World:
    """One registry over fakes; `restart()` makes its successor over the same cluster."""

    settings: Settings
    placement: FakePlacement
    factory: FakeNodeFactory
    store: MemoryRecordStore
    restarts: list[str] = field(default_factory=list)
    registries: list[SessionRegistry] = field(default_factory=list)

    def registry(self) -> SessionRegistry:
        nodes = NodeActors(self.factory, lambda node: self.registries[-1].streamer_restarted(node),
                           on_restart=self.restarts.append, check_every_s=0.02)
        registry = SessionRegistry(self.settings, self.placement, nodes, self.store,
                                   on_restart=self.restarts.append, stop_timeout_s=0.3,
                                   idle_check_every_s=0.02)
        self.registries.append(registry)
        return registry

    async def restart(self) -> SessionRegistry:
        """The registry's process dies (its tasks with it) and Ray starts a new one."""
        old = self.registries[-1]
        await old._records.flush()
        for task in [*old._tasks, *(e.task for e in old._entries.values() if e.task)]:
            task.cancel()
        await old._nodes.close()
        return self.registry()

    def actor(self, session_id: str) -> FakeSessionActor:
        return next(a for a in reversed(self.placement.placed) if a.session_id == session_id)


_WORLDS: list[World] = []


@pytest.fixture(autouse=True)
async def _stop_every_registry() -> AsyncIterator[None]:
    """Each test's registries' background tasks end with the test."""
    yield
    while _WORLDS:
        for registry in _WORLDS.pop().registries:
            tasks = [*registry._tasks, *(e.task for e in registry._entries.values() if e.task),
                     registry._spares._task]
            for task in tasks:
                if task is not None:
                    task.cancel()
            pending = [t for t in tasks if t is not None]
            done, left = await asyncio.wait(pending, timeout=2) if pending else (set(), set())
            assert not left, f"tasks that ignore cancellation: {left}"
            await registry._nodes.close()


@pytest.fixture
async def world() -> AsyncIterator[World]:
    yield await make_world()


async def make_world(slots: dict[str, int] | None = None, **settings: Any) -> World:
    placement = FakePlacement(slots or {"node-a": 2})
    world = World(Settings(warm_browsers=settings.pop("warm_browsers", 0),
                           warm_refill_delay_s=settings.pop("warm_refill_delay_s", 0),
                           **settings),
                  placement, FakeNodeFactory(placement), MemoryRecordStore())
    world.registry()
    _WORLDS.append(world)
    return world


async def running(registry: SessionRegistry, session_id: str) -> None:
    await until(lambda: registry._entries[session_id].record.state is SessionState.RUNNING)


async def test_sessions_waiting_for_a_slot_are_placed_in_the_order_they_came() -> None:
    world = await make_world({"node-a": 1})
    registry = world.registries[-1]
    first = await registry.create(SPEC)
    await running(registry, first.id)
    waiting = [await registry.create(SPEC) for _ in range(3)]
    assert [r.queue_position for r in waiting] == [1, 2, 3]
    assert (await registry.pool()).queue == [r.id for r in waiting]
    order = []
    for record in [first, *waiting[:-1]]:
        await registry.stop(record.id)
        # Fake Ray hands the freed slot to the newest waiter; the registry's line decides.
        nxt = waiting[len(order)].id
        await running(registry, nxt)
        order.append(nxt)
    assert order == [r.id for r in waiting]


async def test_a_warm_spare_becomes_the_next_session_and_is_replaced_when_there_is_room():
    world = await make_world({"node-a": 2}, warm_browsers=1)
    registry = world.registries[-1]
    await registry.keep_warm()
    await until(lambda: len(registry._spares.ready) == 1)
    spare = registry._spares.ready[0]
    assert spare.actor.warmed and spare.actor.streams, "placed, connected and warmed"
    record = await registry.create(SPEC)
    assert record.id == spare.id and record.node_id == "node-a"
    await running(registry, record.id)
    assert world.actor(record.id) is spare.actor
    await until(lambda: len(registry._spares.ready) == 1)  # the second slot
    assert registry._spares.ready[0].id != record.id
    # Both slots held now: the next session is placed cold, and no spare is made for it.
    other = await registry.create(SPEC)
    assert other.id == registry._spares.ready[0].id if registry._spares.ready else True
    await running(registry, other.id)
    await asyncio.sleep(0.05)
    assert not registry._spares.ready and registry._spares.held == 0


async def test_the_next_spare_is_made_a_while_after_one_is_taken_not_at_once() -> None:
    world = await make_world({"node-a": 3}, warm_browsers=1, warm_refill_delay_s=0.3)
    registry = world.registries[-1]
    await registry.keep_warm()
    await until(lambda: len(registry._spares.ready) == 1)  # the first: at once
    record = await registry.create(SPEC)
    await running(registry, record.id)
    await asyncio.sleep(0.15)
    assert registry._spares.held == 0, "nothing made while the taken one's page opens"
    await until(lambda: len(registry._spares.ready) == 1)
    assert registry._spares.ready[0].id != record.id


async def test_a_session_that_records_nothing_never_takes_a_warm_spare() -> None:
    # A spare's stream was opened recording; `record: false` must store nothing.
    world = await make_world({"node-a": 2}, warm_browsers=1)
    registry = world.registries[-1]
    await registry.keep_warm()
    await until(lambda: len(registry._spares.ready) == 1)
    spare = registry._spares.ready[0]
    record = await registry.create(SPEC.model_copy(update={"record": False}))
    assert record.id != spare.id
    assert registry._spares.ready == [spare]
    await running(registry, record.id)


async def test_no_spare_is_made_while_a_session_waits_for_a_slot() -> None:
    world = await make_world({"node-a": 1}, warm_browsers=1)
    registry = world.registries[-1]
    first = await registry.create(SPEC)
    await running(registry, first.id)
    queued = await registry.create(SPEC)
    await registry.stop(first.id)
    await running(registry, queued.id)
    await asyncio.sleep(0.05)
    assert registry._spares.held == 0


async def test_a_session_stopped_while_waiting_for_a_slot_ends_stopped_and_leaves_nothing(
        world: World) -> None:
    registry = world.registries[-1]
    for _ in range(2):
        await running(registry, (await registry.create(SPEC)).id)
    queued = await registry.create(SPEC)
    await until(lambda: world.placement.waiting == 1)
    stopped = await registry.stop(queued.id)
    assert stopped.state is SessionState.STOPPED and stopped.error is None
    assert world.placement.waiting == 0
    assert all(a.session_id != queued.id for a in world.placement.placed)


async def test_a_session_stopped_between_placing_and_starting_ends_stopped(world: World):
    registry = world.registries[-1]
    record = await registry.create(SPEC)
    await until(lambda: world.placement.placed)  # placed, its stream being opened
    stopped = await registry.stop(record.id)
    await until(lambda: registry._entries[record.id].task.done())
    assert stopped.state is SessionState.STOPPED and stopped.error is None
    assert not world.placement.live, "its actor was ended"


async def test_a_dead_session_actor_is_replaced_and_resumes_from_its_checkpoint(world: World):
    registry = world.registries[-1]
    record = await registry.create(SPEC)
    await running(registry, record.id)
    checkpoint = Checkpoint(url="http://127.0.0.1:9/two", step=2, version=5,
                            steps=[StepStatus(index=i, action="wait") for i in range(3)])
    registry.report(record.id, checkpoint)
    registry.report(record.id, checkpoint.model_copy(update={"step": 0, "version": 4}))
    first = world.actor(record.id)
    first.die()
    await until(lambda: len(world.placement.placed) == 2)
    second = world.actor(record.id)
    await running(registry, record.id)
    assert second.name == f"session:{record.id}#1"
    assert second.started_with == [(SPEC, checkpoint)], "the newest report wins"
    info = await registry.get(record.id)
    assert info.restarts == 1 and info.epoch == 1
    streamer = world.factory.streamers["node-a"]
    assert streamer.opened == [(record.id, 0), (record.id, 1)]
    assert second.streams[-1].epoch == 1
    assert world.restarts == ["session"]


async def test_restarts_stop_at_the_budget_and_the_reason_is_in_words() -> None:
    world = await make_world(max_restarts=1)
    registry = world.registries[-1]
    record = await registry.create(SPEC)
    await running(registry, record.id)
    world.actor(record.id).die()
    await until(lambda: len(world.placement.placed) == 2)
    await running(registry, record.id)
    world.actor(record.id).die()
    await until(lambda: registry._entries[record.id].record.state.ended)
    info = await registry.get(record.id)
    assert info.state is SessionState.FAILED
    assert info.error == ("its browser session actor died, and it had been restarted 1 times "
                          "already (RRSTREAM_MAX_RESTARTS)")


@pytest.mark.parametrize(("node_lost", "setting"), [
    (False, {"on_session_crash": "fail"}), (True, {"on_node_loss": "fail"})])
async def test_the_policy_for_each_kind_of_loss_can_say_fail(node_lost: bool,
                                                           setting: dict[str, str]) -> None:
    world = await make_world({"node-a": 1, "node-b": 1}, **setting)
    registry = world.registries[-1]
    record = await registry.create(SPEC)
    await running(registry, record.id)
    node = world.actor(record.id).node_id
    if node_lost:
        world.placement.lose_node(node)
    else:
        world.actor(record.id).die()
    await until(lambda: registry._entries[record.id].record.state.ended)
    info = await registry.get(record.id)
    assert info.state is SessionState.FAILED and info.restarts == 0
    assert info.error.endswith("is fail")
    assert ("node was lost" in info.error) is node_lost


async def test_a_session_on_a_lost_node_restarts_on_another() -> None:
    world = await make_world({"node-a": 1, "node-b": 1})
    registry = world.registries[-1]
    record = await registry.create(SPEC)
    await running(registry, record.id)
    lost = world.actor(record.id).node_id
    world.placement.lose_node(lost)
    await until(lambda: len(world.placement.placed) == 2)
    await running(registry, record.id)
    info = await registry.get(record.id)
    assert info.node_id != lost and info.restarts == 1 and info.epoch == 1


async def test_a_restarted_streamer_gives_each_of_its_sessions_a_new_epoch(world: World):
    registry = world.registries[-1]
    ids = [(await registry.create(SPEC)).id for _ in range(2)]
    for sid in ids:
        await running(registry, sid)
    streamer = world.factory.streamers["node-a"]
    await until(lambda: registry._nodes.streamer_instance("node-a") is not None)
    streamer.restart()
    for sid in ids:
        await until(lambda sid=sid: world.actor(sid).streams[-1].epoch == 1)
        assert streamer.held[sid] == 1
        assert (await registry.get(sid)).restarts == 0, "not a session restart"
    assert world.restarts == ["streamer"]
    ref = await registry.stream(ids[0], after_epoch=0, wait_s=1)
    assert ref.epoch == 1


async def test_a_session_that_lost_its_stream_gets_a_new_one(world: World) -> None:
    registry = world.registries[-1]
    record = await registry.create(SPEC)
    await running(registry, record.id)
    await registry.stream_lost(record.id)
    assert [s.epoch for s in world.actor(record.id).streams] == [0, 1]


async def test_a_dead_streamer_is_replaced_not_reused(world: World) -> None:
    registry = world.registries[-1]
    record = await registry.create(SPEC)
    await running(registry, record.id)
    dead = world.factory.streamers["node-a"]
    dead.dead = True
    await registry.stream_lost(record.id)
    assert len(world.factory.made) == 2 and world.factory.streamers["node-a"] is not dead
    assert world.actor(record.id).streams[-1].streamer is world.factory.streamers["node-a"]


async def test_a_restarted_registry_adopts_running_sessions_and_requeues_waiting_ones(
        world: World) -> None:
    registry = world.registries[-1]
    running_one = await registry.create(SPEC)
    await running(registry, running_one.id)
    actor = world.actor(running_one.id)
    orphan = await world.placement.place("orphan", "session:orphan")  # a spare, say
    waiting = await registry.create(SPEC)
    await until(lambda: world.placement.waiting == 1)

    successor = await world.restart()
    listed = {r.id: r for r in await successor.list()}
    assert set(listed) == {running_one.id, waiting.id}
    assert orphan.killed, "an actor no record claims is stopped"
    await running(successor, running_one.id)
    assert world.actor(running_one.id) is actor, "adopted, not replaced"
    await running(successor, waiting.id)  # in the slot the orphan held
    assert (await successor.stop(running_one.id)).state is SessionState.STOPPED
    assert actor.state is SessionState.STOPPED


async def test_a_restarted_registry_takes_over_the_node_actors_and_closes_them_at_shutdown(
        world: World) -> None:
    registry = world.registries[-1]
    record = await registry.create(SPEC)
    await running(registry, record.id)
    successor = await world.restart()
    await successor.started()
    await until(lambda: str(successor._nodes.states("node-a").browser) == "alive")
    await successor.shutdown()
    assert world.factory.browsers["node-a"].closed and world.factory.browsers["node-a"].released
    assert world.factory.streamers["node-a"].closed_all


async def test_a_restarted_registry_replaces_a_session_whose_actor_is_gone(world: World):
    registry = world.registries[-1]
    record = await registry.create(SPEC)
    await running(registry, record.id)
    await registry._records.flush()
    world.actor(record.id).die()  # while no registry watches
    for task in [*registry._tasks, *(e.task for e in registry._entries.values() if e.task)]:
        task.cancel()
    successor = await world.restart()
    await successor.started()
    await until(lambda: len(world.placement.placed) == 2)
    await running(successor, record.id)
    assert (await successor.get(record.id)).restarts == 1


async def test_a_restarted_registry_reopens_streams_its_streamer_lost_meanwhile(world: World):
    registry = world.registries[-1]
    record = await registry.create(SPEC)
    await running(registry, record.id)
    successor = await world.restart()
    world.factory.streamers["node-a"].restart()
    await successor.started()
    await until(lambda: world.actor(record.id).streams[-1].epoch == 1)


async def test_stop_ends_a_session_that_does_not_stop_by_itself(world: World) -> None:
    registry = world.registries[-1]
    record = await registry.create(SPEC)
    await running(registry, record.id)
    world.actor(record.id).hang_on_stop = True
    began = time.monotonic()
    stopped = await registry.stop(record.id)
    assert time.monotonic() - began < 1.0
    assert stopped.state is SessionState.STOPPED and world.actor(record.id).killed


async def test_an_idle_session_without_viewers_is_stopped_after_its_timeout() -> None:
    clock = [1000.0]
    world = await make_world({"node-a": 3}, idle_timeout_s=60)
    registry = world.registries[-1]
    registry._clock = lambda: clock[0]
    watched, unwatched, exempt = (await registry.create(SPEC), await registry.create(SPEC),
                                  await registry.create(SessionSpec(url="http://127.0.0.1:9/",
                                                                    idle_timeout_s=0)))
    for record in (watched, unwatched, exempt):
        await running(registry, record.id)
        world.actor(record.id).finish(SessionState.IDLE)
    world.factory.streamers["node-a"].viewer_counts[watched.id] = 1
    await until(lambda: registry._entries[unwatched.id].record.state is SessionState.IDLE)
    await asyncio.sleep(0.1)
    clock[0] += 61
    await until(lambda: registry._entries[unwatched.id].record.state.ended)
    await asyncio.sleep(0.1)
    assert not registry._entries[watched.id].record.state.ended
    assert not registry._entries[exempt.id].record.state.ended


async def test_shutdown_stops_sessions_and_spares_and_releases_node_actors() -> None:
    world = await make_world({"node-a": 2}, warm_browsers=1)
    registry = world.registries[-1]
    record = await registry.create(SPEC)
    await running(registry, record.id)
    await until(lambda: len(registry._spares.ready) == 1)
    await registry.shutdown()
    assert not world.placement.live
    assert world.factory.streamers["node-a"].closed_all, "recordings flushed first"
    assert world.factory.streamers["node-a"].released
    assert world.factory.browsers["node-a"].closed and world.factory.browsers["node-a"].released
    assert (await registry.get(record.id)).state is SessionState.STOPPED


async def test_an_ended_sessions_stream_is_dropped_once_its_retention_passed() -> None:
    world = await make_world(ended_retention_s=0.2)
    registry = world.registries[-1]
    record = await registry.create(SPEC)
    await running(registry, record.id)
    await registry.stop(record.id)
    streamer = world.factory.streamers["node-a"]
    await asyncio.sleep(0.05)
    assert record.id in streamer.held, "still readable for a while: viewers drain it"
    assert (await registry.stream(record.id, wait_s=1)).session_id == record.id
    _, _, stats = await registry.describe(record.id)
    assert stats is not None, "its counts are still there"
    await until(lambda: record.id in streamer.dropped)
    assert record.id not in streamer.held and not world.placement.live
    with pytest.raises(StreamUnavailable):
        await registry.stream(record.id, wait_s=1)
    assert streamer.dropped.count(record.id) == 1


async def test_records_the_store_refused_are_written_in_the_next_round() -> None:
    from pipeline.models import SessionRecord
    from pipeline.records import RecordBook

    class Flaky(MemoryRecordStore):
        def __init__(self) -> None:
            super().__init__()
            self.down = True

        async def save(self, records):  # the GCS is restarting
            if self.down:
                raise ConnectionError("GCS unreachable")
            await super().save(records)

    store = Flaky()
    book = RecordBook(store, keep_ended=1)

    first = SessionRecord(id="a", spec=SPEC, state=SessionState.STOPPED, created_at=1.0,
                          ended_at=2.0)
    second = SessionRecord(id="b", spec=SPEC, state=SessionState.STOPPED, created_at=1.0,
                           ended_at=3.0)
    book.changed(first)
    await book.flush()
    assert store.saved == {}
    store.down = False
    book.changed(second)
    await book.flush()
    assert set(store.saved) == {"a", "b"}
    assert await book.forget_oldest([first, second]) == ["a"]
    assert set(store.saved) == {"b"}


async def test_control_calls_reach_the_session_actor_and_its_state_is_the_records() -> None:
    world = await make_world({"node-a": 1})
    registry = world.registries[-1]
    record = await registry.create(SPEC)
    await running(registry, record.id)
    paused, status, _ = await registry.pause(record.id, "key:abc")
    assert paused.state is SessionState.PAUSED and status is not None
    assert [(c.action, c.by) for c in status.control] == [("pause", "key:abc")]
    await registry.add_steps(record.id, [WaitStep(ms=5)], "api")
    assert world.actor(record.id).added == [WaitStep(ms=5)]
    resumed, _, _ = await registry.resume(record.id, "api")
    assert resumed.state is SessionState.RUNNING
    with pytest.raises(ControlRefused, match="is running: only a paused session can be"):
        await registry.resume(record.id, "api")
    with pytest.raises(SessionNotFound):
        await registry.pause("nope", "api")


async def test_control_calls_to_a_queued_or_ended_session_are_refused() -> None:
    world = await make_world({"node-a": 1})
    registry = world.registries[-1]
    first = await registry.create(SPEC)
    await running(registry, first.id)
    queued = await registry.create(SPEC)
    with pytest.raises(ControlRefused, match=f"session {queued.id} is pending: only a running"):
        await registry.pause(queued.id, "api")
    await registry.stop(first.id)
    with pytest.raises(ControlRefused, match="is stopped: steps can be added to a running"):
        await registry.add_steps(first.id, [WaitStep(ms=5)], "api")


async def test_a_paused_session_without_viewers_is_stopped_after_the_idle_timeout() -> None:
    clock = [1000.0]
    world = await make_world({"node-a": 1}, idle_timeout_s=60)
    registry = world.registries[-1]
    registry._clock = lambda: clock[0]
    record = await registry.create(SPEC)
    await running(registry, record.id)
    await registry.pause(record.id, "api")
    await asyncio.sleep(0.1)
    clock[0] += 61
    await until(lambda: registry._entries[record.id].record.state.ended)
