"""The API's side of the network policy: a session whose start URL names an inside
address is refused before it takes a browser slot (422), where the browser would only
show an error page. The browser checks again (pipeline/network_guard.py): names resolve
anew by then, and redirects and steps are its alone."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.errors import AddressRefused
from pipeline.models import SessionSpec
from pipeline.network_policy import settings_policy


class StartUrlCheck:
    """One per gateway replica; its resolutions are cached a few seconds."""

    def __init__(self, settings: Settings) -> None:
        self._policy = settings_policy(settings)

    async def check(self, spec: SessionSpec) -> None:
        """Raises AddressRefused when `spec`'s start URL may not be opened."""
        if self._policy is None or spec.url is None:
            return
        refusal = await self._policy.check(str(spec.url))
        if refusal is not None:
            raise AddressRefused(refusal.url, refusal.reason)


__all__ = ["StartUrlCheck"]
