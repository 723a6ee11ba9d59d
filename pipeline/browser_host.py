"""BrowserHost: one Chromium per node, shared by that node's sessions.

A session's own Chromium costs ~120 MB besides its page (the browser process, the GPU,
network and storage services, two zygotes). Sharing one per node leaves each session
only its renderers and its BrowserContext, which keeps cookies and storage apart.

The host runs Playwright's browser server (what `launch-server` runs: one Playwright
server process and its Chromium, started by pipeline/browser_server.cjs) on a Unix
socket in its launch's own directory, mode 0700: no TCP port at all. On 127.0.0.1 the
path would be no secret (Playwright's server tells it to anyone at `GET /json`), and any
local user could drive every session's browser; the socket lets in only processes of
the user Ray runs as, and the server itself admits only connections carrying the
launch's secret (a fresh one per launch, handed to the server on its stdin), so not
even another process of that user gets in without it. The host hands its sessions the
endpoint and the secret (a BrowserEndpoint) through their Ray actor calls. Each session
connects its own Playwright to it (`chromium.connect`) and sees only the contexts it
created. Connecting over raw CDP instead (`connect_over_cdp`) makes every session's
Playwright attach to every page in the browser, and hold up each new page and frame
until all of them have: work that grows with the square of the sessions.

Runs as the Ray actor `browser:<node id>`; the class is plain Python so it runs
without Ray too. The server exits when its Chromium dies, and is started under
`setpriv --pdeathsig KILL`, so not even a killed host leaves it behind (Chromium exits
when its server goes). A renderer that keeps a core busy runs at a lower CPU priority
and on a capped share of a core until it calms down (pipeline/renderer_priority.py);
its cgroups (pipeline/cpu_caps.py) go when the server stops. Each launch runs with TMPDIR in a
directory of its own (pipeline/browser_dirs.py), deleted when that server is gone; a
host starting (Ray restarts a killed one) first sweeps the directories of hosts and
sessions that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
import shutil
import subprocess
from pathlib import Path

import orjson

# The driver's node binary and CLI, the way Playwright's Python package runs them itself.
from playwright._impl._driver import compute_driver_executable

from pipeline.browser import BrowserEndpoint, launch_args
from pipeline.browser_dirs import BrowserDir, sweep
from pipeline.config import Settings
from pipeline.cpu_caps import CgroupCpuCaps
from pipeline.errors import BrowserLaunchError, InvalidTransition
from pipeline.renderer_priority import ChromiumRenderers, RendererPriority

_log = logging.getLogger(__name__)
_LAUNCH_TIMEOUT_S = 30.0
_EXIT_WAIT_S = 5.0
_SETPRIV = shutil.which("setpriv")
_SOCKET_NAME = "server.sock"
_SERVER_PATH = "/playwright"
_SERVER_SCRIPT = Path(__file__).with_name("browser_server.cjs")


class HostState(enum.StrEnum):
    IDLE = "idle"  # no Chromium yet, or it died and the next endpoint() relaunches it
    RUNNING = "running"
    CLOSED = "closed"


class BrowserHost:
    """Launches the browser server on first use and again after its Chromium died; hands
    out its endpoint."""

    def __init__(self, settings: Settings) -> None:
        """Sweeps what dead hosts and sessions left in the browsers' temp root first."""
        sweep()
        self._settings = settings
        self._state = HostState.IDLE
        self._process: asyncio.subprocess.Process | None = None
        self._dir: BrowserDir | None = None  # the running server's TMPDIR
        self._chromium: int | None = None
        self._endpoint: BrowserEndpoint | None = None
        self._launches = 0
        self._lock = asyncio.Lock()
        self._priority: RendererPriority | None = None
        self._renderers: ChromiumRenderers | None = None
        self._watching: asyncio.Task[None] | None = None

    async def endpoint(self, executable: str | None,
                       failed: BrowserEndpoint | None = None) -> BrowserEndpoint:
        """The browser server's WebSocket URL and secret, launching it first if needed;
        `executable` is the Chromium binary (None: Playwright's own).

        `failed` is an endpoint the caller lost its connection to. A server whose Chromium
        died exits; while that one still winds down it is waited for, so that every
        session on the node reports the same crash and only the first relaunches.
        """
        async with self._lock:
            if self._state is HostState.CLOSED:
                raise InvalidTransition("browser host", self._state, "endpoint")
            if failed is not None and failed == self._endpoint and self._process is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._process.wait(), _EXIT_WAIT_S)
            if self._process is None or self._process.returncode is not None:
                await self._launch(executable)
            assert self._endpoint is not None
            return self._endpoint

    def pid(self) -> int | None:
        """Chromium's browser process, while it runs."""
        if self._process is None or self._process.returncode is not None:
            return None
        return self._chromium

    def launches(self) -> int:
        return self._launches

    def lowered_renderers(self) -> list[int]:
        """Renderers running at RRSTREAM_BUSY_RENDERER_NICE now, for keeping a core busy."""
        return self._priority.lowered if self._priority is not None else []

    async def close(self) -> None:
        """Stops the server and its Chromium; idempotent."""
        async with self._lock:
            self._state = HostState.CLOSED
            await self._stop_server()

    async def _launch(self, executable: str | None) -> None:
        await self._stop_server()  # what is left of a dead one goes first
        settings = self._settings
        self._dir = temp = await asyncio.to_thread(BrowserDir.create, "host")
        temp.path.chmod(0o700)  # the socket's directory: only Ray's user may reach it
        socket_path = temp.path / _SOCKET_NAME
        secret = secrets.token_urlsafe(32)
        # Node listens on a Unix socket when `port` is a path. SIGTERM makes the server
        # close Chromium (which deletes its profile) and exit.
        options = {"headless": settings.headless, "args": launch_args(settings),
                   "port": str(socket_path), "wsPath": _SERVER_PATH, "handleSIGINT": False,
                   "handleSIGTERM": True, "handleSIGHUP": False}
        if executable:
            options["executablePath"] = executable
        node, cli = compute_driver_executable()
        command = [node, str(_SERVER_SCRIPT), str(Path(cli).parent)]
        if _SETPRIV:
            command = [_SETPRIV, "--pdeathsig", "KILL", "--", *command]
        try:
            self._process = await asyncio.create_subprocess_exec(
                *command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, env=temp.env())
            assert self._process.stdin is not None and self._process.stdout is not None
            self._process.stdin.write(orjson.dumps({"secret": secret, "options": options}))
            self._process.stdin.close()
            # The server prints its endpoint once Chromium runs.
            line = await asyncio.wait_for(self._process.stdout.readline(), _LAUNCH_TIMEOUT_S)
        except OSError as exc:
            await self._stop_server()
            raise BrowserLaunchError(executable, str(exc)) from exc
        except TimeoutError:
            line = b""
        if not line.strip() or not socket_path.exists():
            await self._stop_server()
            raise BrowserLaunchError(executable, "the browser server printed no endpoint")
        self._endpoint = BrowserEndpoint(f"ws+unix://{socket_path}:{_SERVER_PATH}", secret)
        self._chromium = _browser_process(self._process.pid)
        self._launches += 1
        self._state = HostState.RUNNING
        if settings.busy_renderer_nice and self._chromium is not None:
            caps = CgroupCpuCaps()
            if settings.busy_renderer_cpu:
                await asyncio.to_thread(caps.remove_stale, self._chromium)
            self._renderers = ChromiumRenderers(self._chromium, caps)
            self._priority = RendererPriority(self._renderers, settings.busy_renderer_nice,
                                              cap=settings.busy_renderer_cpu)
            self._watching = asyncio.create_task(self._priority.run(), name="renderer-priority")
        _log.info("shared Chromium running (server pid %d, browser pid %s, launch %d)",
                  self._process.pid, self._chromium, self._launches)

    async def _stop_server(self) -> None:
        watching, self._watching, self._priority = self._watching, None, None
        renderers, self._renderers = self._renderers, None
        if watching is not None:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        if renderers is not None:
            renderers.close()
        process, self._process = self._process, None
        temp, self._dir = self._dir, None
        self._endpoint = self._chromium = None
        if self._state is HostState.RUNNING:
            self._state = HostState.IDLE
        try:
            if process is not None and process.returncode is None:
                process.terminate()  # the server closes Chromium on its way out
                try:
                    await asyncio.wait_for(process.wait(), _EXIT_WAIT_S)
                except TimeoutError:
                    process.kill()
                    await process.wait()
        finally:
            if temp is not None:
                # Whatever the server left (a profile after a crash, a Chromium) goes too.
                await asyncio.to_thread(temp.remove)


def _browser_process(server_pid: int) -> int | None:
    """The Chromium browser process the server started: its child without `--type=`."""
    try:
        children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
        for pid in children:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if not any(arg.startswith(b"--type=") for arg in cmdline):
                return int(pid)
    except OSError:
        pass
    return None


__all__ = ["BrowserHost", "HostState"]
