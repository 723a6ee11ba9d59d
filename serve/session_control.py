"""The workflow control routes: `POST /sessions/{id}/pause`, `/resume` and `/steps`.

(No `from __future__ import annotations`: FastAPI reads these signatures at run time.)

The routes hold nothing: the registry hands each call to the session's actor, which
decides (pipeline/control.py) and records who asked. `mount_session_control` adds them to
the gateway's app with the dependency that names the caller (and answers 401 without an
API key when one is required); the gateway sets `app.state.session_control` to a
SessionControl over its registry client. Unit tests build a small app with a fake
registry behind the same Protocol (tests/unit/test_session_control_api.py).
"""

from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, Request

from pipeline.models import SessionInfo, StepsRequest
from pipeline.registry import Described
from pipeline.steps import Step
from serve.errors import error_answer
from serve.info import session_info


class Controller(Protocol):
    """What the routes ask of the registry (serve/registry_client.py)."""

    async def pause(self, session_id: str, by: str) -> Described: ...

    async def resume(self, session_id: str, by: str) -> Described: ...

    async def add_steps(self, session_id: str, steps: list[Step], by: str) -> Described: ...


def controller_of(caller: str) -> str:
    """Who asked, as a session's control log names them: an API key by its identity
    (`key:<id>`, serve/access.py), any other caller `api`, so that no client address is
    written into a recording its viewers may see."""
    return caller if caller.startswith("key:") else "api"


class SessionControl:
    def __init__(self, registry: Controller, public_url: str | None = None) -> None:
        self._registry = registry
        self._public_url = public_url

    async def pause(self, session_id: str, caller: str, base: str) -> SessionInfo:
        return self._info(await self._registry.pause(session_id, controller_of(caller)), base)

    async def resume(self, session_id: str, caller: str, base: str) -> SessionInfo:
        return self._info(await self._registry.resume(session_id, controller_of(caller)), base)

    async def add_steps(self, session_id: str, body: StepsRequest, caller: str,
                        base: str) -> SessionInfo:
        described = await self._registry.add_steps(session_id, list(body.steps),
                                                   controller_of(caller))
        return self._info(described, base)

    def _info(self, described: Described, base: str) -> SessionInfo:
        record, status, stats = described
        return session_info(record, status, stats, (self._public_url or base).rstrip("/"))


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: error_answer(401),
    404: error_answer(404, "No such session"),
    409: error_answer(409, "The session's state does not allow it (`message` says which "
                      "state, and which allow it), or the steps would pass the most a "
                      "session may have"),
    422: error_answer(422, "The request is malformed: `message` names the field"),
    503: error_answer(503, "The session registry is being restarted, or the session's "
                      "actor is being replaced; see Retry-After"),
}


def _service(request: Request) -> SessionControl:
    return request.app.state.session_control


def mount_session_control(app: FastAPI, caller: Callable[..., Any]) -> None:
    """Adds the control routes to `app`; `caller` is the dependency that says who calls
    (the gateway's `api_caller`)."""
    router = APIRouter(tags=["sessions"])
    Caller = Annotated[str, Depends(caller)]

    @router.post("/sessions/{session_id}/pause", response_model=SessionInfo,
                 responses=_ERRORS)
    async def pause_session(session_id: str, request: Request, by: Caller) -> SessionInfo:
        """Pauses a running session's workflow at its next step boundary: the step running
        finishes, the next starts only after `resume`. The page stays live, streamed and
        recorded. 409 unless the session is running."""
        return await _service(request).pause(session_id, by, str(request.base_url))

    @router.post("/sessions/{session_id}/resume", response_model=SessionInfo,
                 responses=_ERRORS)
    async def resume_session(session_id: str, request: Request, by: Caller) -> SessionInfo:
        """Runs a paused session's workflow on from its next step (idle at once if none is
        left). 409 unless the session is paused."""
        return await _service(request).resume(session_id, by, str(request.base_url))

    @router.post("/sessions/{session_id}/steps", response_model=SessionInfo,
                 responses=_ERRORS)
    async def add_session_steps(session_id: str, body: StepsRequest, request: Request,
                                by: Caller) -> SessionInfo:
        """Adds steps after the session's others, the same steps `POST /sessions` takes: a
        running session runs them after its own, an idle one at once (it is running
        again), a paused one once resumed. 409 for a session that is not running, paused
        or idle (waiting for a slot, starting, stopping or ended), or when it would have
        more than 1000 steps in all."""
        return await _service(request).add_steps(session_id, body, by,
                                                 str(request.base_url))

    app.include_router(router)


__all__ = ["Controller", "SessionControl", "controller_of", "mount_session_control"]
