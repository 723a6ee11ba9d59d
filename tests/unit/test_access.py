"""Who may call the API and open a stream: API keys, viewer tokens, origins, limits.

No Ray, no browser: the pieces of serve/access.py and ViewerSockets' refusals, each
against the rule of docs/security.md it implements.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from starlette.exceptions import HTTPException

from pipeline.config import Settings
from pipeline.models import SessionRecord, SessionSpec, SessionState, ViewerLinkRequest
from serve.access import Access, NotForThis, still_valid
from serve.api_keys import ApiKeyConfigError, ApiKeys, presented_key, read_digests
from serve.client_limits import ClientLimits, TrustedProxies
from serve.viewer_socket import ViewerSockets, _token_watch
from serve.viewer_tokens import TokenRefused, TokenSigner, ViewerClaims
from tests.unit.fake_socket import FakeSocket, NoMetrics, hello

SECRET = SecretStr("s3cret-for-tests")


def _required(**overrides: object) -> Settings:
    return Settings(auth="required", api_keys=["key-one", "key-two"], token_secret=SECRET,
                    **overrides)


def _claims(**overrides: object) -> ViewerClaims:
    fields = {"k": "session", "t": "abc", "r": "view", "x": time.time() + 60, **overrides}
    return ViewerClaims.model_validate(fields)


# -- settings ---------------------------------------------------------------------------------


def test_auth_is_required_beyond_loopback_and_off_is_refused_there() -> None:
    assert not Settings().auth_required
    assert not Settings(host="::1").auth_required
    assert Settings(host="0.0.0.0").auth_required
    assert Settings(auth="required").auth_required
    with pytest.raises(ValidationError, match="allowed only when the gateway listens on loopback"):
        Settings(host="0.0.0.0", auth="off")


def test_comma_separated_lists_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RRSTREAM_API_KEYS", "a, b,")
    monkeypatch.setenv("RRSTREAM_ALLOWED_ORIGINS", "https://app.example.com")
    settings = Settings()
    assert settings.api_keys == ["a", "b"]
    assert settings.allowed_origins == ["https://app.example.com"]
    with pytest.raises(ValidationError, match="not an address or CIDR"):
        Settings(trusted_proxies=["proxy.example"])


# -- API keys ---------------------------------------------------------------------------------


def test_api_keys_match_only_our_keys(tmp_path: Path) -> None:
    digest_file = tmp_path / "keys"
    digest_file.write_text(f"# ops\n{hashlib.sha256(b'from-file').hexdigest()}\n\n")
    keys = ApiKeys.from_settings(Settings(api_keys=["key-one"], api_keys_file=str(digest_file)))
    assert len(keys) == 2
    assert keys.identify("key-one") is not None
    assert keys.identify("from-file") is not None
    assert keys.identify("key-one") != keys.identify("from-file")
    assert keys.identify("key-on") is None
    assert keys.identify(None) is None
    assert keys.identify("") is None


def test_a_digest_file_with_a_plain_key_is_refused_by_line(tmp_path: Path) -> None:
    digest_file = tmp_path / "keys"
    digest_file.write_text("not-a-digest\n")
    with pytest.raises(ApiKeyConfigError, match="line 1: not a SHA-256 hex digest"):
        read_digests(digest_file)


def test_required_auth_without_any_key_or_secret_is_a_clear_error() -> None:
    with pytest.raises(ApiKeyConfigError, match="no API key is configured"):
        ApiKeys.from_settings(Settings(auth="required"))
    with pytest.raises(ApiKeyConfigError, match="RRSTREAM_TOKEN_SECRET is not set"):
        Access(Settings(auth="required", api_keys=["k"]))


def test_a_key_rides_in_bearer_or_x_api_key() -> None:
    assert presented_key("abc", None) == "abc"
    assert presented_key(" abc ", "xyz") == "abc", "Bearer comes first"
    assert presented_key(None, "xyz") == "xyz"
    assert presented_key("  ", " xyz") == "xyz"
    assert presented_key(None, None) is None and presented_key("", " ") is None


def test_the_caller_is_a_key_or_401_when_auth_is_required() -> None:
    access = Access(_required())
    assert access.caller("key-two", "127.0.0.1", {}).startswith("key:")
    assert access.caller("key-one", "127.0.0.1", {}).startswith("key:")
    for key, message in ((None, "an API key is required"),
                         ("nope", "that API key is not valid")):
        with pytest.raises(HTTPException) as refused:
            access.caller(key, "127.0.0.1", {})
        assert refused.value.status_code == 401
        assert message in refused.value.detail
        assert refused.value.headers == {"WWW-Authenticate": 'Bearer realm="rrstream"'}
    # auth off: anyone, known by address
    assert Access(Settings()).caller(None, "127.0.0.9", {}) == "addr:127.0.0.9"


# -- viewer tokens ----------------------------------------------------------------------------


def test_each_refused_token_says_why() -> None:
    signer = TokenSigner("one")
    token = signer.mint(_claims())
    cases = {
        None: "missing",
        "": "missing",
        "not a token": "malformed",
        "abc.def": "malformed",
        token[:-3] + "xyz": "forged",
        TokenSigner("another").mint(_claims()): "forged",
        signer.mint(_claims(x=time.time() - 1)): "expired",
    }
    for presented, reason in cases.items():
        with pytest.raises(TokenRefused) as refused:
            signer.verify(presented, time.time())
        assert refused.value.reason == reason, presented
    assert signer.verify(token, time.time()).target == "abc"


def test_a_revoked_generation_refuses_older_tokens_only() -> None:
    still_valid(_claims(g=2), 2)
    still_valid(_claims(g=3), 2)  # the hub has not heard of the newer generation yet
    with pytest.raises(TokenRefused, match="revoked"):
        still_valid(_claims(g=1), 2)


def test_admit_checks_the_target_and_nothing_when_auth_is_off() -> None:
    access = Access(_required())
    token = access.tokens.mint(_claims())
    assert access.admit(token, "session", "abc") is not None
    with pytest.raises(NotForThis, match="for session abc, not session other"):
        access.admit(token, "session", "other")
    with pytest.raises(NotForThis):
        access.admit(token, "recording", "abc")
    assert Access(Settings()).admit(None, "session", "abc") is None


def test_links_carry_the_token_in_the_fragment_and_honour_the_ttl_bound() -> None:
    access = Access(_required(ended_retention_s=60))
    link = access.session_link("http://gw", "abc", 4, 100, ViewerLinkRequest(ttl_s=160,
                                                                           label="ops"))
    assert link.url == f"http://gw/?session=abc#token={link.token}"
    claims = access.tokens.verify(link.token, time.time())
    assert (claims.generation, claims.label, claims.role) == (4, "ops", "view")
    with pytest.raises(HTTPException) as refused:
        access.session_link("http://gw", "abc", 0, 100, ViewerLinkRequest(ttl_s=161))
    assert refused.value.status_code == 422
    replay = access.recording_link("http://gw", "rec", ViewerLinkRequest())
    assert replay.url.startswith("http://gw/?recording=rec#token=")


# -- origins and client addresses -----------------------------------------------------------------


def test_only_our_own_or_allowed_origins_may_open_streams() -> None:
    access = Access(Settings(allowed_origins=["https://app.example.com"],
                             public_url="https://rr.example.com"))
    host = {"host": "127.0.0.1:8000"}
    assert access.origin_allowed(host)  # no Origin: not a browser page
    assert access.origin_allowed({**host, "origin": "http://127.0.0.1:8000"})
    assert access.origin_allowed({**host, "origin": "https://APP.example.com"})
    assert access.origin_allowed({**host, "origin": "https://rr.example.com"})
    assert not access.origin_allowed({**host, "origin": "http://evil.example"})
    assert not access.origin_allowed({**host, "origin": "http://127.0.0.1:8001"})


def test_forwarded_for_counts_only_from_trusted_proxies() -> None:
    trusted = TrustedProxies(["127.0.0.0/8", "10.0.0.0/8"])
    xff = {"x-forwarded-for": "203.0.113.7, 10.1.2.3"}
    assert trusted.client("127.0.0.1", xff) == "203.0.113.7"
    assert trusted.client("198.51.100.1", xff) == "198.51.100.1"  # not a proxy
    assert trusted.client("127.0.0.1", {}) == "127.0.0.1"


# -- limits -----------------------------------------------------------------------------------


def test_session_creations_are_limited_per_caller() -> None:
    limits = ClientLimits(Settings(limit_session_creations="2/minute"))
    assert limits.session_creation("key:a") is None
    assert limits.session_creation("key:a") is None
    refusal = limits.session_creation("key:a")
    assert refusal is not None and 1 <= refusal.retry_after_s <= 60
    assert "RRSTREAM_LIMIT_SESSION_CREATIONS" in refusal.message
    assert limits.session_creation("key:b") is None  # another key has its own budget


def test_stream_connects_open_streams_and_viewers_are_limited() -> None:
    limits = ClientLimits(Settings(limit_stream_connects="3/minute",
                                   max_connections_per_client=2, max_viewers_per_session=5))
    assert limits.stream_connect("a", 0) is None
    limits.opened("a")
    assert limits.stream_connect("a", 0) is None
    limits.opened("a")
    refusal = limits.stream_connect("a", 0)
    assert refusal is not None and "too many open streams" in refusal.message
    limits.closed("a")
    assert limits.open_count("a") == 1
    refusal = limits.stream_connect("b", 5)
    assert refusal is not None and "maximum of 5 viewers" in refusal.message
    assert limits.stream_connect("a", 0) is None  # the third connect of "a"
    refusal = limits.stream_connect("a", 0)
    assert refusal is not None and "too many stream connects" in refusal.message


# -- ViewerSockets' refusals ----------------------------------------------------------------------


class _Registry:
    """Knows one session, `abc`, whose links were revoked once (generation 1)."""

    async def get(self, session_id: str) -> SessionRecord:
        from pipeline.errors import SessionNotFound

        if session_id != "abc":
            raise SessionNotFound(session_id)
        return SessionRecord(id="abc", spec=SessionSpec(url="http://127.0.0.1:9/"),
                             state=SessionState.RUNNING, created_at=0.0, link_generation=1)


def _sockets(**overrides: object) -> ViewerSockets:
    settings = _required(**overrides)
    return ViewerSockets(settings, _Registry(), NoMetrics(), Access(settings))


async def _close_of(sockets: ViewerSockets, socket: FakeSocket, session: str = "abc") -> tuple:
    await asyncio.wait_for(sockets.live(socket, session), 5)
    assert socket.closed is not None
    return socket.closed


async def test_streams_refuse_each_bad_token_with_4401_or_4403_and_a_reason() -> None:
    sockets = _sockets()
    signer = sockets._access.tokens
    cases = [
        (None, 4401, "a viewer token is required"),
        ("garbage", 4401, "malformed"),
        (TokenSigner("other").mint(_claims(g=1)), 4401, "signature is not ours"),
        (signer.mint(_claims(g=1, x=time.time() - 5)), 4401, "expired"),
        (signer.mint(_claims(g=0)), 4401, "revoked"),
        (signer.mint(_claims(g=1, t="zzz")), 4403, "not session abc"),
    ]
    for token, code, reason in cases:
        socket = FakeSocket(hello(token))
        closed = await _close_of(sockets, socket)
        assert closed[0] == code and reason in closed[1], (token, closed)
        error = json.loads(socket.sent[-1])
        assert error["type"] == "error" and error["code"] == code


async def test_a_foreign_origin_is_refused_before_the_socket_opens() -> None:
    socket = FakeSocket(hello(), headers={"host": "127.0.0.1:8000",
                                          "origin": "http://evil.example"})
    closed = await _close_of(_sockets(), socket)
    assert closed[0] == 4403 and not socket.accepted and not socket.sent


async def test_too_many_streams_from_one_address_close_1013_with_the_limit() -> None:
    sockets = _sockets(max_connections_per_client=1)
    sockets._access.limits.opened("127.0.0.1")  # one stream already open
    closed = await _close_of(sockets, FakeSocket(hello()))
    assert closed[0] == 1013 and "RRSTREAM_MAX_CONNECTIONS_PER_CLIENT" in closed[1]


async def test_an_open_socket_closes_at_expiry_and_at_revocation() -> None:
    socket = FakeSocket()
    await asyncio.wait_for(_token_watch(socket, _claims(x=time.time() + 0.3), lambda: 0), 3)
    assert socket.closed == (4401, "the viewer token has expired")
    socket = FakeSocket()
    generation = [0]
    watch = asyncio.ensure_future(_token_watch(socket, _claims(g=0), lambda: generation[0]))
    await asyncio.sleep(0.1)
    assert socket.closed is None
    generation[0] = 1
    await asyncio.wait_for(watch, 3)
    assert socket.closed == (4401, "the viewer link was revoked")


# -- the API describes itself -----------------------------------------------------------------


def test_every_error_the_schema_documents_is_the_json_body_and_keyed_routes_say_401() -> None:
    from serve.gateway import app

    open_paths = {"/healthz", "/readyz", "/assets/{asset_id}"}
    spec = app.openapi()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            for status, answer in answers.items():
                if status[0] in "45":
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (
                        method, path, status)
            if path not in open_paths:
                assert "401" in answers, (method, path)
                assert operation.get("security"), (method, path)


def test_the_schema_documents_the_headers_errors_carry() -> None:
    from serve.gateway import app

    spec = app.openapi()
    promised = {"401": "WWW-Authenticate", "429": "Retry-After", "503": "Retry-After"}
    found = 0
    for operations in spec["paths"].values():
        for operation in operations.values():
            for status, header in promised.items():
                if status in operation["responses"]:
                    headers = operation["responses"][status]["headers"]
                    assert headers[header]["required"] is True
                    found += 1
    assert found >= 30  # every keyed route's 401 and 503, and the creations' 429
