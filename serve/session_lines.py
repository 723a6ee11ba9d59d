"""RaySessionLines: a gateway's direct line to a session's actor while a person is in control.

Input goes straight to the session actor (one Ray call per batch of input, ~1 ms), not
through the registry, which only names the actor (`session_actor`). A handle is looked up
once per take; a dead actor's calls raise ActorLost, and the next take looks it up again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from pipeline.errors import ActorLost, describe_error, unwrap
from pipeline.models import SessionStatus
from pipeline.protocol import InputEvent
from serve.control_socket import SessionLine
from serve.registry_client import RegistryClient

_CALL_TIMEOUT_S = 5.0


class _RayLine:
    def __init__(self, handle: Any, name: str) -> None:
        self._handle, self._name = handle, name

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            async with asyncio.timeout(_CALL_TIMEOUT_S):
                return await getattr(self._handle, method).remote(*args)
        except RayTaskError as exc:  # the session's own answer: TakeoverRefused, ...
            raise unwrap(exc) from None
        except (RayActorError, TimeoutError) as exc:
            raise ActorLost(f"session actor {self._name}", describe_error(exc)) from exc

    async def take_control(self, holder_id: str, label: str,
                           expires_at: float) -> SessionStatus:
        return await self._call("take_control", holder_id, label, expires_at)

    async def renew_control(self, holder_id: str) -> None:
        await self._call("renew_control", holder_id)

    async def control_input(self, holder_id: str, events: list[InputEvent]) -> None:
        await self._call("control_input", holder_id, events)

    async def hand_back(self, holder_id: str, reason: str | None) -> SessionStatus:
        return await self._call("hand_back", holder_id, reason)


class RaySessionLines:
    def __init__(self, registry: RegistryClient, namespace: str) -> None:
        self._registry = registry
        self._namespace = namespace

    async def line(self, session_id: str) -> SessionLine:
        name = await self._registry.session_actor(session_id)
        try:
            # A GCS call: in a thread, so a GCS that is slow holds up this socket only.
            handle = await asyncio.to_thread(ray.get_actor, name, self._namespace)
        except ValueError as exc:
            raise ActorLost(f"session actor {name}", "it is gone") from exc
        return _RayLine(handle, name)


__all__ = ["RaySessionLines"]
