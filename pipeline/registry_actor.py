"""The session registry as the Ray actor `registry`, and how the gateway finds it.

The actor is detached and named, on the head node, and Ray restarts it when its process
dies (`max_restarts=-1`): the GCS is its supervisor. A restarted registry reads the
session records it persisted in the GCS's key-value store and adopts the detached,
named actors its predecessor left (pipeline/registry.py, `started`), so running
sessions keep streaming through it. With GCS fault tolerance (an external Redis, as the
cluster/ configs set up) the records and every actor survive a GCS restart too.
"""

from __future__ import annotations

import os
from typing import Any

import ray

from pipeline.actors import REGISTRY_NAME
from pipeline.cluster import RayNodeActorFactory, RayPlacement, kv_record_store
from pipeline.config import Settings
from pipeline.logs import configure_logging
from pipeline.metrics import RegistryMetrics, RestartMetrics
from pipeline.models import RecordingInfo
from pipeline.node_recordings import NodeRecordings
from pipeline.nodes import NodeActors
from pipeline.recording_index import IndexUpdate
from pipeline.recording_store import RecordingStore
from pipeline.registry import SessionRegistry
from pipeline.retention import Retention


class RegistryActor(SessionRegistry):
    """SessionRegistry over Ray, plus the recordings of every node."""

    def __init__(self, settings: Settings) -> None:
        configure_logging()
        restarts = RestartMetrics()
        nodes = NodeActors(RayNodeActorFactory(settings), self._streamer_restarted,
                           on_restart=restarts.restarted)
        placement = RayPlacement(settings)
        super().__init__(settings, placement, nodes, kv_record_store(settings.namespace),
                         on_restart=restarts.restarted, metrics=RegistryMetrics())
        shared = RecordingStore.shared_from_settings(settings)
        self._recordings = NodeRecordings(nodes, placement, shared, self.recording_sessions)
        # A shared store's retention runs here, once for the cluster (a local store's runs
        # in its node's streamer).
        self._retention = (Retention.from_settings(settings, shared, self.recording_sessions)
                           if shared is not None else None)
        if self._retention is not None:
            self._retention.start()
        context = ray.get_runtime_context()
        if context.was_current_actor_reconstructed:
            restarts.restarted("registry")
        # Adopt what a predecessor left, now rather than at the first request: its
        # sessions need supervising whether or not anyone is asking.
        context.current_actor.started.remote()

    def worker_pid(self) -> int:
        """The actor's worker process (for operators' tools and the fault tests)."""
        return os.getpid()

    async def _streamer_restarted(self, node_id: str) -> None:
        await self.streamer_restarted(node_id)

    async def recordings(self) -> list[RecordingInfo]:
        await self.started()
        return await self._recordings.list()

    async def recording(self, recording_id: str) -> RecordingInfo:
        await self.started()
        return await self._recordings.info(recording_id)

    async def recording_streamer(self, recording_id: str) -> Any:
        """The streamer actor that stores the recording, to fetch its frames from."""
        await self.started()
        return await self._recordings.streamer(recording_id)

    async def delete_recording(self, recording_id: str) -> None:
        await self.started()
        await self._recordings.delete(recording_id)

    async def recording_indexes(self, known: dict[str, str]) -> IndexUpdate:
        await self.started()
        return await self._recordings.indexes(known)

    async def asset_holder(self, asset_id: str) -> Any | None:
        """A streamer actor that has the asset (serve/assets.py reads it from there)."""
        await self.started()
        return await self._recordings.asset_holder(asset_id)


def get_or_create_registry(settings: Settings) -> Any:
    """The registry actor, created on first use: detached, so it outlives gateway replicas;
    on the head node, which lives as long as the cluster; restarted by Ray when it dies."""
    return ray.remote(RegistryActor).options(
        name=REGISTRY_NAME, namespace=settings.namespace, get_if_exists=True,
        lifetime="detached", num_cpus=0, max_concurrency=10_000, max_restarts=-1,
        resources={"node:__internal_head__": 0.001},
    ).remote(settings)


__all__ = ["REGISTRY_NAME", "RegistryActor", "get_or_create_registry"]
