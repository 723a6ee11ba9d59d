"""Viewer tokens: signed, expiring grants to watch one session or replay one recording.

Signed with itsdangerous (HMAC-SHA256) under RRSTREAM_TOKEN_SECRET, which every replica
shares, so a token one replica minted opens a stream on any other. A token names its
target, a role (`view`; `control` also takes control of the page from the viewer), an expiry and a
label, and the session's link generation when it was minted: revoking a session's links
moves its generation on, and every older token is refused from then on.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Literal

from itsdangerous import URLSafeSerializer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

TargetKind = Literal["session", "recording"]
Role = Literal["view", "control"]
_SALT = "rrstream.viewer-token.v1"
_SHAPE = re.compile(r"^\.?[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+$")  # "." first: compressed


class ViewerClaims(BaseModel):
    """What a token grants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TargetKind = Field(alias="k")
    target: str = Field(alias="t")
    role: Role = Field(alias="r")
    expires_at: float = Field(alias="x", description="Unix time, seconds.")
    generation: int = Field(default=0, alias="g")
    label: str | None = Field(default=None, alias="l")


class TokenRefused(Exception):
    """A token that opens nothing; `str()` says why, in words, for the close reason."""

    def __init__(self, reason: Literal["missing", "malformed", "forged", "expired", "revoked"],
                 message: str) -> None:
        super().__init__(message)
        self.reason = reason


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class TokenSigner:
    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeSerializer(
            secret, salt=_SALT, signer_kwargs={"digest_method": hashlib.sha256})

    def mint(self, claims: ViewerClaims) -> str:
        return self._serializer.dumps(claims.model_dump(by_alias=True, exclude_none=True))

    def verify(self, token: str | None, now: float) -> ViewerClaims:
        """The token's claims, or TokenRefused saying why not (revocation is the caller's:
        it knows the session's current generation)."""
        if not token:
            raise TokenRefused("missing", "a viewer token is required")
        if len(token) > 4096 or not _SHAPE.match(token):
            raise TokenRefused("malformed", "the viewer token is malformed")
        valid, payload = self._serializer.loads_unsafe(token)
        if payload is None:
            raise TokenRefused("malformed", "the viewer token is malformed")
        if not valid:
            raise TokenRefused("forged", "the viewer token's signature is not ours")
        try:
            claims = ViewerClaims.model_validate(payload)
        except ValidationError:
            raise TokenRefused("malformed", "the viewer token is malformed") from None
        if claims.expires_at <= now:
            raise TokenRefused("expired", "the viewer token has expired")
        return claims


__all__ = ["Role", "TargetKind", "TokenRefused", "TokenSigner", "ViewerClaims", "new_secret"]
