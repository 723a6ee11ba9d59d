"""Fixtures of the session fault tests: the misbehaving site and a node's shared browser."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from pipeline.browser_host import BrowserHost
from pipeline.config import Settings
from tests.integration.fault_site import FaultSite, serve_fault_site


@pytest.fixture(scope="session")
def fault_site() -> Iterator[FaultSite]:
    with serve_fault_site() as site:
        yield site


@pytest.fixture
async def browser_host() -> AsyncIterator[BrowserHost]:
    """A BrowserHost of the test's own (its Chromium launches on first use)."""
    host = BrowserHost(Settings())
    try:
        yield host
    finally:
        await host.close()
