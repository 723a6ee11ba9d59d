"""ApiKeys: who may call the control API (`Authorization: Bearer <key>` or `X-API-Key`).

Keys are held as SHA-256 digests only (RRSTREAM_API_KEYS are hashed on load; the file
RRSTREAM_API_KEYS_FILE holds digests), and a presented key is compared against every
digest with `hmac.compare_digest`, so neither the answer's time nor a memory dump gives
a key away.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

from pipeline.config import Settings

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class ApiKeyConfigError(ValueError):
    """The configured keys cannot be used (a malformed digest file, no key at all)."""


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def read_digests(path: Path) -> list[str]:
    """A digest file: one SHA-256 hex digest per line; blank lines and `#` comments skipped."""
    digests = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip().lower()
        if not line:
            continue
        if not _DIGEST.match(line):
            raise ApiKeyConfigError(f"{path}, line {number}: not a SHA-256 hex digest "
                                    "(64 hex digits); the file holds digests, not keys")
        digests.append(line)
    return digests


class ApiKeys:
    def __init__(self, digests: list[str]) -> None:
        self._digests = [bytes.fromhex(d) for d in digests]

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        digests = [key_digest(k) for k in settings.api_keys]
        if settings.api_keys_file:
            digests += read_digests(Path(settings.api_keys_file).expanduser())
        if settings.auth_required and not digests:
            raise ApiKeyConfigError(
                "authentication is required (RRSTREAM_AUTH, or the gateway listens beyond "
                "loopback) but no API key is configured: set RRSTREAM_API_KEYS or "
                "RRSTREAM_API_KEYS_FILE")
        return cls(digests)

    def __len__(self) -> int:
        return len(self._digests)

    def identify(self, key: str | None) -> str | None:
        """The key's identity (its digest's first 12 hex digits, for limits and logs), or
        None when it is no key of ours."""
        if not key:
            return None
        presented = hashlib.sha256(key.encode()).digest()
        match = None
        for digest in self._digests:  # every digest, whichever matches: constant time
            if hmac.compare_digest(presented, digest):
                match = digest
        return match.hex()[:12] if match is not None else None


def presented_key(bearer: str | None, x_api_key: str | None) -> str | None:
    """The key a request carries: the credentials of `Authorization: Bearer <key>` (as
    FastAPI's HTTPBearer reads them), else `X-API-Key`; blank ones are none."""
    for value in (bearer, x_api_key):
        if value and value.strip():
            return value.strip()
    return None


__all__ = ["ApiKeyConfigError", "ApiKeys", "key_digest", "presented_key", "read_digests"]
