"""RegistryClient: the gateway's typed calls to the registry actor.

Every call has a deadline, and a registry that does not answer (Ray is restarting it, or
the GCS) raises RegistryUnavailable, which the API answers with 503 and `Retry-After`
and a viewer's socket with 1013: never a bare 500 or a hung request. The registry's own
errors (SessionNotFound, …) come through unwrapped, as the API answers them by kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from ray.exceptions import RayActorError, RayTaskError

from pipeline.errors import RegistryUnavailable, unwrap
from pipeline.models import (
    PoolStatus,
    RecordingInfo,
    SessionRecord,
    SessionSpec,
    SessionStatus,
    StreamStats,
)
from pipeline.recording_index import IndexUpdate
from pipeline.registry import Described
from pipeline.steps import Step
from pipeline.streamer import StreamRef

_T = TypeVar("_T")
READ_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 10.0  # a stop takes up to 5 s, by force


class RegistryClient:
    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def _ask(self, call: Awaitable[_T], timeout_s: float = READ_TIMEOUT_S) -> _T:
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
            # cancellation of a caller (a hub closing) when the call finishes at that moment.
            async with asyncio.timeout(timeout_s):
                return await call
        except RayTaskError as exc:  # the registry's own answer: SessionNotFound, …
            raise unwrap(exc) from None
        except RayActorError as exc:
            raise RegistryUnavailable("Ray is restarting it") from exc
        except TimeoutError as exc:
            raise RegistryUnavailable(f"no answer within {timeout_s:g} s") from exc

    async def create(self, spec: SessionSpec) -> SessionRecord:
        return await self._ask(self._handle.create.remote(spec), WRITE_TIMEOUT_S)

    async def get(self, session_id: str) -> SessionRecord:
        return await self._ask(self._handle.get.remote(session_id))

    async def list(self) -> list[SessionRecord]:
        return await self._ask(self._handle.list.remote())

    async def describe(self, session_id: str) -> tuple[SessionRecord, SessionStatus | None,
                                                       StreamStats | None]:
        return await self._ask(self._handle.describe.remote(session_id), WRITE_TIMEOUT_S)

    async def describe_all(self) -> list[tuple[SessionRecord, SessionStatus | None,
                                               StreamStats | None]]:
        return await self._ask(self._handle.describe_all.remote(), WRITE_TIMEOUT_S)

    async def stop(self, session_id: str) -> SessionRecord:
        return await self._ask(self._handle.stop.remote(session_id), WRITE_TIMEOUT_S)

    async def pause(self, session_id: str, by: str) -> Described:
        return await self._ask(self._handle.pause.remote(session_id, by), WRITE_TIMEOUT_S)

    async def resume(self, session_id: str, by: str) -> Described:
        return await self._ask(self._handle.resume.remote(session_id, by), WRITE_TIMEOUT_S)

    async def add_steps(self, session_id: str, steps: list[Step], by: str) -> Described:
        return await self._ask(self._handle.add_steps.remote(session_id, steps, by),
                               WRITE_TIMEOUT_S)

    async def session_actor(self, session_id: str) -> str:
        return await self._ask(self._handle.session_actor.remote(session_id))

    async def revoke_links(self, session_id: str) -> SessionRecord:
        return await self._ask(self._handle.revoke_links.remote(session_id), WRITE_TIMEOUT_S)

    async def pool(self) -> PoolStatus:
        return await self._ask(self._handle.pool.remote())

    async def ready(self) -> str | None:
        return await self._ask(self._handle.ready.remote())

    async def keep_warm(self) -> int:
        return await self._ask(self._handle.keep_warm.remote(), WRITE_TIMEOUT_S)

    async def stream(self, session_id: str, after_epoch: int | None = None,
                     wait_s: float = 60.0) -> StreamRef:
        """The session's stream once it has one newer than `after_epoch` (see
        SessionRegistry.stream); TimeoutError when none came within `wait_s`."""
        return await self._ask(self._handle.stream.remote(session_id, after_epoch, wait_s),
                               wait_s + READ_TIMEOUT_S)

    async def recordings(self) -> list[RecordingInfo]:
        return await self._ask(self._handle.recordings.remote(), WRITE_TIMEOUT_S)

    async def recording(self, recording_id: str) -> RecordingInfo:
        return await self._ask(self._handle.recording.remote(recording_id), WRITE_TIMEOUT_S)

    async def recording_streamer(self, recording_id: str) -> Any:
        return await self._ask(self._handle.recording_streamer.remote(recording_id),
                               WRITE_TIMEOUT_S)

    async def recording_indexes(self, known: dict[str, str]) -> IndexUpdate:
        return await self._ask(self._handle.recording_indexes.remote(known), WRITE_TIMEOUT_S)

    async def asset_holder(self, asset_id: str) -> Any | None:
        return await self._ask(self._handle.asset_holder.remote(asset_id), WRITE_TIMEOUT_S)

    async def delete_recording(self, recording_id: str) -> None:
        await self._ask(self._handle.delete_recording.remote(recording_id), WRITE_TIMEOUT_S)


__all__ = ["RegistryClient"]
