"""A property-based fuzz of the REST API from its own OpenAPI schema (schemathesis).

Against a real stack (`rrstream up` in a process of its own) with auth required, the
private-network block on, one browser slot that refuses when taken, and a Chromium that
resolves every name to nothing (`MAP * ~NOTFOUND`, which the gateway's start-URL check
reads too): no request of the fuzz resolves a name through the system's DNS, and no
page it starts reaches anything off this machine. Every answer must be documented for
its route (status, content type, body schema), no 5xx but a documented 503 with
Retry-After, and every error the JSON body `{"message": str, "detail": ...}`. Without a
key every keyed route answers 401.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CheckContext
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.secure_stack import KEY, SecureStack, secure_stack

_FUZZ_ENV = {
    "RRSTREAM_BLOCK_PRIVATE_NETWORKS": "true",
    "RRSTREAM_HOST_RESOLVER_RULES": "MAP * ~NOTFOUND",
    "RRSTREAM_BROWSER_SLOTS": "1",
    "RRSTREAM_WHEN_FULL": "refuse",
    # Every request comes from one key: the fuzz is not about the limits (429 is
    # documented where it can come, and test_security.py hits it).
    "RRSTREAM_LIMIT_SESSION_CREATIONS": "1000000/minute",
}
_EXAMPLES = 25  # per operation and mode: about 17 x 3 x 25 requests, ~1 minute here
# Routes without a key (docs/security.md): the probes, and page assets, named only by hash.
_OPEN = {"/healthz", "/readyz", "/assets/{asset_id}"}
# schemathesis makes up values for both of the schema's key headers; ours replace them.
_KEYED_HEADERS = {"Authorization": f"Bearer {KEY}", "X-API-Key": KEY}
Check = Callable[[CheckContext, Response, schemathesis.Case], bool | None]


def server_errors_are_a_documented_503(ctx: CheckContext, response: Response,
                                       case: schemathesis.Case) -> None:
    """No 500 of any kind: a 503 only (documented: status_code_conformance), and it says
    when to come back."""
    if response.status_code >= 500:
        assert response.status_code == 503, f"a server error: {response.status_code}"
        assert "retry-after" in response.headers, "a 503 without Retry-After"


def errors_are_the_json_body(ctx: CheckContext, response: Response,
                             case: schemathesis.Case) -> None:
    if response.status_code < 400:
        return
    media = response.headers.get("content-type", [""])[0]  # schemathesis: lowercase names
    assert media.startswith("application/json"), f"an error answered {media}: {response.text!r}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"message", "detail"}, body
    assert isinstance(body["message"], str) and body["message"].strip(), body


_CHECKS: list[Check] = [status_code_conformance, content_type_conformance,
                        response_schema_conformance, response_headers_conformance,
                        server_errors_are_a_documented_503, errors_are_the_json_body]


@dataclass
class Fuzz:
    base_url: str
    schema: schemathesis.BaseSchema
    http: requests.Session = field(default_factory=requests.Session)
    created: set[str] = field(default_factory=set)
    statuses: dict[str, set[int]] = field(default_factory=dict)

    def operations(self) -> list[schemathesis.APIOperation]:
        return [result.ok() for result in self.schema.get_all_operations()]

    def run(self, operation: schemathesis.APIOperation, mode: GenerationMode,
            checks: list[Check], headers: dict[str, str] | None = None,
            path_parameters: dict[str, str] | None = None) -> str | None:
        """Fuzzes one operation; the failure it found, in words, or None."""

        @settings(max_examples=_EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate, Phase.shrink],
                  suppress_health_check=list(HealthCheck))
        @given(operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
        def one(case: schemathesis.Case) -> None:
            response = case.call(base_url=self.base_url, session=self.http, headers=headers,
                                 timeout=30)
            self._note(case, response)
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except BaseException as failed:  # noted, and raised on
                failed.add_note(f"{response.status_code} {response.text[:300]!r} to "
                                + case.as_curl_command(headers, base_url=self.base_url))
                raise

        try:
            one()
        except Unsatisfiable:  # nothing of the operation can be made invalid (no inputs)
            assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no positive case"
            return None
        # A failure (FailureGroup is a BaseExceptionGroup), shrunk: reported once every
        # operation has run.
        except (Exception, FailureGroup) as exc:
            where = f"{operation.label} ({mode}{', real ids' if path_parameters else ''})"
            return f"{where}: {_report(exc)}"
        return None

    def _note(self, case: schemathesis.Case, response: Response) -> None:
        self.statuses.setdefault(case.operation.label, set()).add(response.status_code)
        if case.operation.path in ("/sessions", "/demo/start") and case.method == "POST" \
                and response.status_code in (200, 201):
            self.created.add(response.json()["id"])


@pytest.fixture(scope="module")
def fuzz() -> Iterator[Fuzz]:
    with secure_stack(_FUZZ_ENV) as stack:
        fuzz = Fuzz(stack.base_url, schemathesis.openapi.from_url(
            f"{stack.base_url}/openapi.json"))
        try:
            yield fuzz
        finally:
            _stop_all(stack, fuzz.created)


def test_every_answer_of_the_fuzzed_api_is_documented_and_no_5xx_but_503(fuzz: Fuzz) -> None:
    began = time.monotonic()
    operations = fuzz.operations()
    assert len(operations) >= 17, [o.label for o in operations]
    # A session of our own first: it takes the one slot (later creations are refused,
    # 503), and its id (which is its recording's too) is fuzzed beside random ones.
    own = httpx.post(f"{fuzz.base_url}/demo/start", headers=_KEYED_HEADERS, timeout=60)
    assert own.status_code == 200, own.text
    real = own.json()["id"]
    fuzz.created.add(real)
    failures = []
    for operation in operations:
        keyed = operation.path not in _OPEN
        headers = _KEYED_HEADERS if keyed else None
        positive = [*_CHECKS, *([ignored_auth] if keyed else [])]
        # Invalid data is refused (the request models' numbers and flags are strict: no
        # "5" for an integer, no 1 for `true`), and documented.
        for mode, checks in ((GenerationMode.POSITIVE, positive),
                             (GenerationMode.NEGATIVE, [*_CHECKS, negative_data_rejection])):
            failures.append(fuzz.run(operation, mode, checks, headers))
        ids = {name: real for name in ("session_id", "recording_id")
               if f"{{{name}}}" in operation.path}
        if ids:
            failures.append(fuzz.run(operation, GenerationMode.POSITIVE, _CHECKS, headers, ids))
    found = [f for f in failures if f is not None]
    assert not found, "\n\n".join(found)
    seen = set().union(*fuzz.statuses.values())
    assert {200, 201, 204, 404, 422, 503} <= seen, fuzz.statuses
    assert time.monotonic() - began < 240, "the fuzz must stay bounded"


def test_without_a_key_every_keyed_route_answers_401(fuzz: Fuzz) -> None:
    def refused(ctx: CheckContext, response: Response, case: schemathesis.Case) -> None:
        if case.operation.path in _OPEN:
            assert response.status_code != 401
            return
        assert response.status_code == 401, f"{response.status_code}: {response.text!r}"
        assert "Bearer" in response.headers.get("www-authenticate", [""])[0]

    failures = [fuzz.run(operation, GenerationMode.POSITIVE,
                         [*_CHECKS, refused]) for operation in fuzz.operations()]
    found = [f for f in failures if f is not None]
    assert not found, "\n\n".join(found)


def _report(exc: BaseException) -> str:
    """What failed and how to send it again: schemathesis's report (its message, with a
    curl command), once per failure of a group."""
    failures = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
    notes = getattr(exc, "__notes__", [])  # the request, as curl (Fuzz.run)
    return "\n".join([*(f"- {f}" for f in failures), str(exc), *notes])


def _stop_all(stack: SecureStack, created: set[str]) -> None:
    """Stops what the fuzz started, and whatever else is still running on the stack."""
    with httpx.Client(base_url=stack.base_url, headers=_KEYED_HEADERS, timeout=30) as http:
        listed: list[dict[str, Any]] = []
        try:
            listed = http.get("/sessions").json()
        finally:
            running = {s["id"] for s in listed if s["state"] not in ("stopped", "failed")}
            for session_id in sorted(created | running):
                http.delete(f"/sessions/{session_id}")
