"""Shared fixtures: one Ray + Serve gateway per test session, real Chromium, free ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pipeline.config import Settings
from pipeline.ports import free_port
from serve.client import Client

_RECORDINGS_DIR = pytest.StashKey[str]()


_HOME_RECORDINGS = Path("~/.rrstream/recordings").expanduser()
_HOME_BEFORE = pytest.StashKey[list[str] | None]()


def _home_recordings() -> list[str] | None:
    if not _HOME_RECORDINGS.exists():
        return None
    return sorted(str(p.relative_to(_HOME_RECORDINGS)) for p in _HOME_RECORDINGS.rglob("*"))


def pytest_configure(config: pytest.Config) -> None:
    # Nothing a test starts (actors, CLI subprocesses, test clusters) records into the
    # user's store (~/.rrstream/recordings, or one they configured).
    config.stash[_RECORDINGS_DIR] = tempfile.mkdtemp(prefix="rrstream-recordings-")
    os.environ.pop("RRSTREAM_RECORDINGS_DIR", None)
    os.environ["RRSTREAM_RECORDINGS_URL"] = config.stash[_RECORDINGS_DIR]
    config.stash[_HOME_BEFORE] = _home_recordings()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The run fails if it left the user's own recordings other than it found them."""
    before = session.config.stash.get(_HOME_BEFORE, None)
    after = _home_recordings()
    if after != before:
        print(f"\nthe tests changed {_HOME_RECORDINGS}: {before} -> {after}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tier is the directory: `-m unit`, `-m integration` or `-m e2e` runs one tier
    alone."""
    for item in items:
        tier = item.path.parent.name
        if tier in ("unit", "integration", "e2e"):
            item.add_marker(tier)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(config.stash[_RECORDINGS_DIR], ignore_errors=True)


# Limits high enough that tests and benchmarks, all from one address, never meet them.
UNLIMITED = {"limit_session_creations": "1000000/minute",
             "limit_stream_connects": "1000000/minute",
             "max_connections_per_client": 1_000_000, "max_viewers_per_session": 1_000_000}


@dataclass(frozen=True)
class Stack:
    base_url: str
    settings: Settings

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url[4:]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """An embedded Ray on loopback with the gateway deployed on a free port."""
    from serve.app import deploy_gateway, shutdown, start_ray

    settings = Settings(port=free_port(), dashboard_port=free_port(), browser_slots=8,
                        ended_retention_s=120, viewer_queue_frames=64,
                        viewer_window_bytes=256 * 1024, hello_timeout_s=2.0,
                        recordings_url=str(tmp_path_factory.mktemp("recordings")),
                        # Tests start sessions back to back: with the refill delay each
                        # would start cold (tests/unit/test_registry.py tests the delay).
                        warm_refill_delay_s=0,
                        # Every test's client is 127.0.0.1: the per-client limits are
                        # tested on a stack of their own (test_security.py).
                        **UNLIMITED)
    start_ray(settings, dashboard=False, log_to_driver=False)
    try:
        deploy_gateway(settings)
        yield Stack(f"http://127.0.0.1:{settings.port}", settings)
    finally:
        shutdown(settings)


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        yield client


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    """The project's own client (serve/client) on the stack: REST calls and viewers."""
    async with Client(stack.base_url, timeout=60) as rrstream:
        yield rrstream


@contextlib.contextmanager
def _serve_site(root: Path | None = None) -> Iterator[object]:
    """Serves a site on two loopback origins from its own thread's loop, so it answers
    between tests too."""
    from pipeline.demo_site import DemoSite

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="site", daemon=True)
    thread.start()
    site = DemoSite(root=root) if root else DemoSite()
    asyncio.run_coroutine_threadsafe(site.start(), loop).result(30)
    try:
        yield site
    finally:
        asyncio.run_coroutine_threadsafe(site.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture(scope="session")
def demo_site() -> Iterator[object]:
    """The bundled demo site."""
    with _serve_site() as site:
        yield site


@pytest.fixture(scope="session")
def pixel_site() -> Iterator[object]:
    """Canvas pages for the pixel comparisons (tests/fixtures/pixel_site)."""
    with _serve_site(Path(__file__).parent / "fixtures" / "pixel_site") as site:
        yield site


@pytest.fixture(scope="session")
def busy_site() -> Iterator[object]:
    """A page that changes every few ms (tests/fixtures/busy_site)."""
    with _serve_site(Path(__file__).parent / "fixtures" / "busy_site") as site:
        yield site


async def wait_for_state(api: httpx.AsyncClient, session_id: str, states: set[str],
                         timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        info = (await api.get(f"/sessions/{session_id}")).raise_for_status().json()
        if info["state"] in states:
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"session {session_id} stuck in {info['state']}: {info}")
        await asyncio.sleep(0.25)
