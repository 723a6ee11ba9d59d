"""The API's error answers: one JSON body for every error, `{"message": …, "detail": …}`.

`message` says what happened in words a person reads; `detail` carries what a program
may want (the validation errors of a 422, the same text otherwise). Every route documents
the statuses it answers with this body (`responses(…)`), so the OpenAPI schema is true.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from pipeline.errors import (
    ActorLost,
    AddressRefused,
    AssetNotFound,
    ControlRefused,
    PoolFull,
    RecordingInProgress,
    RecordingNotFound,
    RecordingStoreError,
    RegistryUnavailable,
    RRStreamError,
    SessionNotFound,
    StreamUnavailable,
    describe_error,
    unwrap,
)

_log = logging.getLogger(__name__)
# ActorLost: a session's actor died under a call; its supervisor is replacing it.
RETRY_AFTER_S = {PoolFull: 5, RegistryUnavailable: 2, RecordingStoreError: 5, ActorLost: 2}


class ErrorBody(BaseModel):
    """What every error answers."""

    message: str = Field(description="What happened, in words.")
    detail: Any = Field(default=None, description="More for programs: the validation errors "
                        "of a 422, else the message again.")


_DESCRIPTIONS = {
    401: "No API key, or not one of ours, while authentication is required "
         "(docs/security.md)",
    403: "Forbidden",
    404: "No such session or recording",
    409: "The recording is still being written",
    422: "The request is malformed (`message` names the field), or its start URL names an "
         "address the network policy refuses (RRSTREAM_BLOCK_PRIVATE_NETWORKS)",
    429: "Too many requests from this API key or address; see Retry-After",
    503: "Not ready (/readyz), no browser slot free (RRSTREAM_WHEN_FULL=refuse), the "
         "session registry is being restarted, or the recording store does not answer; see "
         "Retry-After",
}


# The headers an error promises, documented (and so checked by the API's fuzz).
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "`Bearer realm=\"rrstream\"`", "required": True,
                               "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait", "required": True,
                          "schema": {"type": "integer", "minimum": 1}}},
    503: {"Retry-After": {"description": "Seconds to wait", "required": True,
                          "schema": {"type": "integer", "minimum": 1}}},
}


def error_answer(status: int, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI response of one error status: ErrorBody, and its headers."""
    answer: dict[str, Any] = {"model": ErrorBody,
                              "description": description or _DESCRIPTIONS[status]}
    if status in _HEADERS:
        answer["headers"] = _HEADERS[status]
    return answer


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route answers; 422 always (FastAPI
    documents one for any route with parameters, and ours answers ErrorBody)."""
    return {status: error_answer(status) for status in sorted({*statuses, 422})}


def error_response(status: int, message: str, detail: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(message=message, detail=message if detail is None else detail)
    return JSONResponse(status_code=status, content=body.model_dump(mode="json"),
                        headers=headers)


def _status_of(exc: RRStreamError) -> int:
    if isinstance(exc, SessionNotFound | RecordingNotFound | AssetNotFound):
        return 404
    if isinstance(exc, RecordingInProgress | StreamUnavailable | ControlRefused):
        return 409
    if isinstance(exc, AddressRefused):
        return 422
    if isinstance(exc, PoolFull | RegistryUnavailable | RecordingStoreError | ActorLost):
        return 503
    return 500


async def _rrstream_error(_: Request, exc: Exception) -> JSONResponse:
    error = unwrap(exc)
    assert isinstance(error, RRStreamError)
    status = _status_of(error)
    retry = next((s for kind, s in RETRY_AFTER_S.items() if isinstance(error, kind)), None)
    if status >= 500 and retry is None:
        _log.error("request failed: %s", describe_error(error))
    return error_response(status, str(error),
                          headers={"Retry-After": str(retry)} if retry else None)


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    message = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in errors
    )
    return error_response(422, _plain(message), _plain(errors))


def _plain(value: Any) -> Any:
    """`value` as JSON can carry it: what a malformed request sent comes back in the
    validation errors, and may hold integers past 64 bits or lone UTF-16 surrogates,
    which JSON encoders refuse (that was a 500, found by the API's fuzz)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, dict):
        return {_plain(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return _plain(str(value))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.__cause__ is not None:
        # FastAPI's "There was an error parsing the body" (400, undocumented): a body that
        # is not UTF-8, or JSON nested too deep to decode. Malformed like any other: 422.
        return error_response(422, f"body: not readable as JSON ({describe_error(exc.__cause__)})")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return error_response(exc.status_code, message, headers=exc.headers)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    _log.exception("request failed: %s", describe_error(exc))
    return error_response(500, f"internal error: {describe_error(exc)}")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RRStreamError, _rrstream_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


__all__ = ["ErrorBody", "error_answer", "error_response", "install_error_handlers",
           "responses"]
