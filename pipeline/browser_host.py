"""BrowserHost: one Chromium per node, shared by that node's sessions.

A session's own Chromium costs ~120 MB besides its page (the browser process, the GPU,
network and storage services, two zygotes). Sharing one per node leaves each session
only its renderers and its BrowserContext, which keeps cookies and storage apart.
Each session still drives the browser through its own Playwright, over CDP on
127.0.0.1 (`connect_over_cdp`).

Runs as the Ray actor `browser:<node id>`; the class is plain Python so it runs
without Ray too. Chromium dies with the host: it is started under
`setpriv --pdeathsig KILL`, so not even a killed host leaves it behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from pipeline.browser import host_args
from pipeline.config import Settings
from pipeline.errors import BrowserLaunchError, InvalidTransition

_log = logging.getLogger(__name__)
_LAUNCH_TIMEOUT_S = 30.0
_EXIT_WAIT_S = 5.0
_PROBE_TIMEOUT_S = 2.0
_SETPRIV = shutil.which("setpriv")


class HostState(enum.StrEnum):
    IDLE = "idle"  # no Chromium yet, or it died and the next endpoint() relaunches it
    RUNNING = "running"
    CLOSED = "closed"


class BrowserHost:
    """Launches Chromium on first use and again after it dies; hands out its CDP endpoint."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._state = HostState.IDLE
        self._process: asyncio.subprocess.Process | None = None
        self._profile: Path | None = None
        self._endpoint: str | None = None
        self._launches = 0
        self._lock = asyncio.Lock()

    async def endpoint(self, executable: str, failed: str | None = None) -> str:
        """The running Chromium's CDP WebSocket URL, launching it first if needed.

        `failed` is an endpoint the caller lost its connection to. If it is still the
        current one and Chromium no longer answers, it is replaced: every session on
        the node reports the same crash, and only the first relaunches.
        """
        async with self._lock:
            if self._state is HostState.CLOSED:
                raise InvalidTransition("browser host", self._state, "endpoint")
            if failed is not None and failed == self._endpoint and not await self._answers():
                await self._stop_chromium()
            if self._process is None or self._process.returncode is not None:
                await self._launch(executable)
            assert self._endpoint is not None
            return self._endpoint

    def pid(self) -> int | None:
        """Chromium's browser process, while it runs."""
        if self._process is None or self._process.returncode is not None:
            return None
        return self._process.pid

    def launches(self) -> int:
        return self._launches

    async def close(self) -> None:
        """Stops Chromium and removes its profile; idempotent."""
        async with self._lock:
            self._state = HostState.CLOSED
            await self._stop_chromium()

    async def _launch(self, executable: str) -> None:
        await self._stop_chromium()  # a dead one's profile goes first
        self._profile = Path(tempfile.mkdtemp(prefix="rrstream-chromium-"))
        command = [executable, *host_args(self._settings), f"--user-data-dir={self._profile}",
                   "--remote-debugging-port=0"]
        if _SETPRIV:
            command = [_SETPRIV, "--pdeathsig", "KILL", "--", *command]
        try:
            self._process = await asyncio.create_subprocess_exec(
                *command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
        except OSError as exc:
            raise BrowserLaunchError(executable, str(exc)) from exc
        # Chromium writes its port and browser target path there once it listens.
        port_file = self._profile / "DevToolsActivePort"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _LAUNCH_TIMEOUT_S
        while True:
            lines = port_file.read_text().splitlines() if port_file.exists() else []
            if len(lines) >= 2:
                break
            if self._process.returncode is not None or loop.time() > deadline:
                code = self._process.returncode
                await self._stop_chromium()
                raise BrowserLaunchError(executable, f"no DevTools endpoint (exit code {code})")
            await asyncio.sleep(0.02)
        self._endpoint = f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        self._launches += 1
        self._state = HostState.RUNNING
        _log.info("shared Chromium %d running (pid %d, launch %d)", self._process.pid,
                  self._process.pid, self._launches)

    async def _answers(self) -> bool:
        """Whether Chromium still serves CDP: a crashed one may not have exited yet."""
        if self._process is None or self._process.returncode is not None:
            return False
        assert self._endpoint is not None
        port = int(self._endpoint.split(":")[2].split("/")[0])
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), _PROBE_TIMEOUT_S)
            try:
                writer.write(b"GET /json/version HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                status = await asyncio.wait_for(reader.readline(), _PROBE_TIMEOUT_S)
            finally:
                writer.close()
        except (OSError, TimeoutError):
            return False
        return b" 200 " in status

    async def _stop_chromium(self) -> None:
        process, self._process = self._process, None
        self._endpoint = None
        if self._state is HostState.RUNNING:
            self._state = HostState.IDLE
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), _EXIT_WAIT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._profile is not None:
            profile, self._profile = self._profile, None
            with contextlib.suppress(OSError):
                await asyncio.to_thread(shutil.rmtree, profile, ignore_errors=True)


__all__ = ["BrowserHost", "HostState"]
