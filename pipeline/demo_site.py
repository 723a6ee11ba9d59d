"""The bundled demo site, served on two loopback origins from the running event loop.

The main pages live on `http://127.0.0.1:<port>`; the widget shown in the home
page's iframe comes from `http://localhost:<other port>`. A different host name
*and* port make the iframe cross-site, so Chromium renders it in its own process
and the recorder has to follow it there, as it must on real sites.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import mimetypes
import socket
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pipeline.errors import InvalidTransition

logger = logging.getLogger(__name__)

SITE_DIR = Path(__file__).parent / "demo_site"
_HOST = "127.0.0.1"
_NO_STORE = {"Cache-Control": "no-store"}


class DemoSiteState(enum.Enum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


_TRANSITIONS: dict[DemoSiteState, frozenset[DemoSiteState]] = {
    DemoSiteState.CREATED: frozenset({DemoSiteState.STARTING, DemoSiteState.STOPPED}),
    DemoSiteState.STARTING: frozenset({DemoSiteState.RUNNING, DemoSiteState.STOPPING}),
    DemoSiteState.RUNNING: frozenset({DemoSiteState.STOPPING}),
    DemoSiteState.STOPPING: frozenset({DemoSiteState.STOPPED}),
    DemoSiteState.STOPPED: frozenset(),
}


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves process signals alone.

    Two servers installing and restoring SIGINT/SIGTERM handlers in whatever order
    they stop would leave one's handler behind; the host process owns signals.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class DemoSite:
    """Serves the demo site on two loopback origins until stopped.

    Use as `async with DemoSite() as site: ...` or call `await start()` and
    `await stop()` yourself, on the event loop that should run the servers.
    `url` is the main origin (`http://127.0.0.1:<port>`), `widget_url` the
    widget's (`http://localhost:<port>`); neither ends with a slash.
    """

    def __init__(
        self,
        *,
        startup_timeout: float = 10.0,
        shutdown_timeout: float = 5.0,
        root: Path = SITE_DIR,
    ) -> None:
        self._startup_timeout = startup_timeout
        self._shutdown_timeout = shutdown_timeout
        self._root = root
        self._state = DemoSiteState.CREATED
        self._url: str | None = None
        self._widget_url: str | None = None
        self._sockets: list[socket.socket] = []
        self._servers: list[_EmbeddedServer] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def state(self) -> DemoSiteState:
        return self._state

    @property
    def url(self) -> str:
        """The main origin, e.g. `http://127.0.0.1:41234`."""
        if self._url is None:
            raise RuntimeError("DemoSite has not been started")
        return self._url

    @property
    def widget_url(self) -> str:
        """The widget's origin, e.g. `http://localhost:41235`."""
        if self._widget_url is None:
            raise RuntimeError("DemoSite has not been started")
        return self._widget_url

    async def start(self) -> None:
        """Bind two free loopback ports and serve until `stop()`."""
        self._move(DemoSiteState.STARTING)
        try:
            self._sockets = [_bind_loopback(), _bind_loopback()]
            site_port, widget_port = (s.getsockname()[1] for s in self._sockets)
            self._url = f"http://{_HOST}:{site_port}"
            self._widget_url = f"http://localhost:{widget_port}"
            app = _build_app(
                self._root, {"__SITE_ORIGIN__": self._url, "__WIDGET_ORIGIN__": self._widget_url}
            )
            for sock in self._sockets:
                config = uvicorn.Config(
                    app,
                    host=_HOST,
                    port=0,
                    log_level="warning",
                    lifespan="off",
                    access_log=False,
                    timeout_graceful_shutdown=int(self._shutdown_timeout),
                )
                server = _EmbeddedServer(config)
                self._servers.append(server)
                task = asyncio.create_task(
                    server.serve(sockets=[sock]), name=f"demo-site:{sock.getsockname()[1]}"
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            async with asyncio.timeout(self._startup_timeout):
                await self._wait_started()
        except BaseException:
            await self._shutdown()
            raise
        self._move(DemoSiteState.RUNNING)
        logger.info("demo site on %s, widget on %s", self._url, self._widget_url)

    async def stop(self) -> None:
        """Stop both servers: close the listeners, drain with a timeout, cancel the rest.

        Stopping a stopped site does nothing; stopping one never started just ends it.
        """
        if self._state is DemoSiteState.STOPPED:
            return
        if self._state is DemoSiteState.CREATED:
            self._move(DemoSiteState.STOPPED)
            return
        await self._shutdown()

    async def __aenter__(self) -> DemoSite:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _move(self, to: DemoSiteState) -> None:
        if to not in _TRANSITIONS[self._state]:
            raise InvalidTransition("DemoSite", self._state.value, to.value)
        self._state = to

    async def _wait_started(self) -> None:
        while not all(server.started for server in self._servers):
            for task in list(self._tasks):
                if task.done():
                    # A server that ended before starting failed; surface its error.
                    task.result()
                    raise RuntimeError("demo site server exited during startup")
            await asyncio.sleep(0.01)

    async def _shutdown(self) -> None:
        self._move(DemoSiteState.STOPPING)
        for server in self._servers:
            server.should_exit = True
        tasks = list(self._tasks)
        try:
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self._shutdown_timeout + 1.0)
                if pending:
                    logger.warning(
                        "demo site: %d server(s) did not stop in time; cancelling", len(pending)
                    )
                    for server in self._servers:
                        server.force_exit = True
                    for task in pending:
                        task.cancel()
                    await asyncio.wait(pending, timeout=1.0)
                for task in tasks:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        logger.error("demo site server failed", exc_info=task.exception())
        except BaseException:
            # Cancelled while draining: leave no server running behind us.
            for task in tasks:
                task.cancel()
            raise
        finally:
            for sock in self._sockets:
                sock.close()
            self._servers.clear()
            self._move(DemoSiteState.STOPPED)


def _bind_loopback() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((_HOST, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def _load_files(root: Path, substitutions: dict[str, str]) -> dict[str, tuple[bytes, str]]:
    """Every file under `root`, read once: URL path -> (body, media type)."""
    files: dict[str, tuple[bytes, str]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        media_type = mimetypes.guess_type(rel)[0] or "application/octet-stream"
        body = path.read_bytes()
        if media_type == "text/html":
            text = body.decode("utf-8")
            for marker, value in substitutions.items():
                text = text.replace(marker, value)
            body = text.encode("utf-8")
        if media_type.startswith("text/") or media_type in (
            "application/javascript",
            "text/javascript",
        ):
            media_type += "; charset=utf-8"
        files[rel] = (body, media_type)
    if "index.html" not in files:
        raise FileNotFoundError(root / "index.html")
    return files


def _build_app(root: Path, substitutions: dict[str, str]) -> Starlette:
    # Serving only what was read at start-up rules out path traversal by construction.
    files = _load_files(root, substitutions)

    async def page(request: Request) -> Response:
        path = request.path_params["path"] or "index.html"
        found = files.get(path)
        if found is None:
            return PlainTextResponse("not found", status_code=404, headers=_NO_STORE)
        body, media_type = found
        return Response(body, media_type=media_type, headers=_NO_STORE)

    return Starlette(routes=[Route("/{path:path}", page, methods=["GET", "HEAD"])])


__all__ = ["SITE_DIR", "DemoSite", "DemoSiteState"]
