"""Access: who may call the API, open a stream, and from where (docs/security.md).

One per gateway replica, built from Settings. It answers four questions: which API key
a REST request carries (401 when auth is required and it carries none of ours); whether
a WebSocket's `Origin` is the gateway's own or an allowed one; what a viewer token grants
(4401 refused, 4403 not for this); and who the client is, for the limits.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException

from pipeline.config import Settings
from pipeline.models import ViewerLink, ViewerLinkRequest
from serve.api_keys import ApiKeyConfigError, ApiKeys
from serve.client_limits import ClientLimits, TrustedProxies
from serve.viewer_tokens import (
    TargetKind,
    TokenRefused,
    TokenSigner,
    ViewerClaims,
    new_secret,
)

RECORDING_LINK_MAX_TTL_S = 7 * 24 * 3600
_WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="rrstream"'}


class NotForThis(Exception):
    """A valid token that does not open this stream (4403); `str()` says why."""


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class Access:
    def __init__(self, settings: Settings) -> None:
        self.required = settings.auth_required
        self.keys = ApiKeys.from_settings(settings)
        if settings.token_secret is not None:
            secret = settings.token_secret.get_secret_value()
        elif self.required:
            raise ApiKeyConfigError(
                "authentication is required but RRSTREAM_TOKEN_SECRET is not set: viewer "
                "tokens need one secret shared by every gateway replica")
        else:  # tokens are not checked: any secret will do, and each replica has its own
            secret = new_secret()
        self.tokens = TokenSigner(secret)
        self.limits = ClientLimits(settings)
        self._proxies = TrustedProxies(settings.trusted_proxies)
        self._origins = {origin_of(o) for o in settings.allowed_origins}
        if settings.public_url:
            self._origins.add(origin_of(settings.public_url))
        self._session_max_extra_s = settings.ended_retention_s

    # -- REST -------------------------------------------------------------------------------

    def caller(self, key: str | None, peer: str | None, headers: Mapping[str, str]) -> str:
        """Who calls, by the API key the request presented (serve/api_keys.py
        `presented_key`): `key:<id>` for one of ours, else (auth off) `addr:<client>`;
        401 when auth is required and the request carries none of our keys."""
        identity = self.keys.identify(key)
        if identity is not None:
            return f"key:{identity}"
        if self.required:
            why = "an API key is required" if key is None else "that API key is not valid"
            raise HTTPException(401, f"{why} (Authorization: Bearer <key>, or X-API-Key)",
                                headers=_WWW_AUTHENTICATE)
        return f"addr:{self.address(peer, headers)}"

    def recording_reader(self, key: str | None, bearer: str | None,
                         recording_id: str) -> ViewerClaims | None:
        """Who may read a recording's stored events or frames: an API key of ours, or (a
        viewer opened by a link, which holds no key) a viewer token of that recording or
        of its session, sent as `Authorization: Bearer <token>`. Returns the token's
        claims (a session's: the caller checks it was not revoked), None for a key or with
        auth off; 401 or 403 otherwise."""
        if not self.required or self.keys.identify(key) is not None:
            return None
        if bearer and "." in bearer:
            try:
                claims = self.tokens.verify(bearer, time.time())
            except TokenRefused as exc:
                raise HTTPException(401, str(exc), headers=_WWW_AUTHENTICATE) from None
            if claims.target != recording_id:
                raise HTTPException(403, f"the viewer token is for {claims.kind} "
                                    f"{claims.target}, not recording {recording_id}")
            return claims
        why = "an API key or a viewer token is required" if key is None else \
            "that API key is not valid"
        raise HTTPException(401, f"{why} (Authorization: Bearer <key or token>)",
                            headers=_WWW_AUTHENTICATE)

    def address(self, peer: str | None, headers: Mapping[str, str]) -> str:
        return self._proxies.client(peer, headers)

    # -- viewer links -------------------------------------------------------------------------

    def session_link(self, base: str, session_id: str, generation: int, max_duration_s: float,
                     request: ViewerLinkRequest) -> ViewerLink:
        limit = max_duration_s + self._session_max_extra_s
        return self._link(f"{base}/?session={session_id}", "session", session_id,
                          generation, request, limit)

    def recording_link(self, base: str, recording_id: str,
                       request: ViewerLinkRequest) -> ViewerLink:
        return self._link(f"{base}/?recording={recording_id}", "recording", recording_id, 0,
                          request, RECORDING_LINK_MAX_TTL_S)

    def _link(self, page: str, kind: TargetKind, target: str, generation: int,
              request: ViewerLinkRequest, max_ttl_s: float) -> ViewerLink:
        if request.ttl_s > max_ttl_s:
            raise HTTPException(422, f"ttl_s may be at most {max_ttl_s:g} s for this {kind}")
        claims = ViewerClaims(k=kind, t=target, r=request.role, g=generation,
                              x=time.time() + request.ttl_s, l=request.label)
        token = self.tokens.mint(claims)
        return ViewerLink(url=f"{page}#token={token}", token=token, role=request.role,
                          label=request.label, expires_at=claims.expires_at)

    # -- streams ------------------------------------------------------------------------------

    def origin_allowed(self, headers: Mapping[str, str]) -> bool:
        """A browser's page may open a stream only from the gateway's own origin (the Host
        it asked) or an allowed one; a client that sends no Origin is no browser page."""
        origin = headers.get("origin")
        if origin is None:
            return True
        if origin_of(origin) in self._origins:
            return True
        return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()

    def admit(self, token: str | None, kind: TargetKind, target: str) -> ViewerClaims | None:
        """What the hello's token grants for watching `target`: its claims; None when auth
        is off (nothing is checked). Raises TokenRefused (4401) or NotForThis (4403)."""
        if not self.required:
            return None
        claims = self.tokens.verify(token, time.time())
        if claims.kind != kind or claims.target != target:
            raise NotForThis(f"the viewer token is for {claims.kind} {claims.target}, "
                             f"not {kind} {target}")
        return claims


    def controller(self, token: str | None, session_id: str) -> ViewerClaims:
        """The claims of a control link of `session_id`, which may take control of its
        page: checked whether auth is required or not (with auth off watching needs no
        token, driving the page does). TokenRefused (4401), NotForThis (4403)."""
        if token is None:
            raise NotForThis("taking control needs a control link (a viewer link with role "
                             "control)")
        claims = self.tokens.verify(token, time.time())
        if claims.kind != "session" or claims.target != session_id:
            raise NotForThis(f"the viewer token is for {claims.kind} {claims.target}, "
                             f"not session {session_id}")
        if claims.role != "control":
            raise NotForThis(f"this viewer link's role is {claims.role}; taking control "
                             "needs a control link")
        return claims


def still_valid(claims: ViewerClaims, generation: int) -> None:
    """Raises TokenRefused when the session's links were revoked after `claims` were minted."""
    if claims.kind == "session" and claims.generation < generation:
        raise TokenRefused("revoked", "the viewer link was revoked")


__all__ = ["Access", "NotForThis", "origin_of", "still_valid"]
