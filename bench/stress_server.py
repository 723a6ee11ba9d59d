"""The benchmark's own loopback web server: the stress page, a simple page, and two hooks.

It runs uvicorn on a thread with its own event loop, so it keeps serving while the
benchmark's loop is busy decoding frames.

- `GET /stress.html?rate=R&seconds=S&run=ID`, `GET /simple.html` and `GET /takeover.html`
  (bench/takeover.py): the pages.
- `GET /busy.html[?hz=20]`: a live dashboard that mutates a few nodes 20 times a second
  (bench/compression.py records it).
- `GET /go?run=ID`: held until the benchmark calls `release(ID)` (its viewer is
  attached), or `_GO_TIMEOUT_S`; the stress page waits on it before emitting.
- `POST /report?run=ID`: the page's own account of what it sent (a channel that does
  not go through the pipeline under test).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_HERE = Path(__file__).parent
_PAGES = {"/stress.html": _HERE / "stress_page.html", "/simple.html": _HERE / "simple_page.html",
          "/busy.html": _HERE / "busy_page.html", "/takeover.html": _HERE / "takeover_page.html"}
_GO_TIMEOUT_S = 60.0
_NO_STORE = {"Cache-Control": "no-store"}


class _ThreadServer(uvicorn.Server):
    """uvicorn without signal handlers: the benchmark's main thread owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class StressServer:
    """`with StressServer() as site:` serves on `site.url` (http://127.0.0.1:<port>)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stress-site",
                                        daemon=True)
        self._go: dict[str, asyncio.Event] = {}  # touched only on the server's loop
        self._reports: dict[str, concurrent.futures.Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        pages = {path: file.read_bytes() for path, file in _PAGES.items()}
        app = Starlette(routes=[
            *(Route(path, self._page(body)) for path, body in pages.items()),
            Route("/go", self._go_handler),
            Route("/report", self._report_handler, methods=["POST"]),
        ])
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                                timeout_graceful_shutdown=2)
        self._server = _ThreadServer(config)
        self._task: concurrent.futures.Future[None] | None = None

    def __enter__(self) -> StressServer:
        self._thread.start()
        self._task = asyncio.run_coroutine_threadsafe(
            self._server.serve(sockets=[self._sock]), self._loop)
        for _ in range(1000):
            if self._server.started:
                return self
            if self._task.done():
                self._task.result()
            threading.Event().wait(0.01)
        raise RuntimeError("stress site did not start within 10 s")

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        try:
            if self._task is not None:
                self._task.result(timeout=5)
        except Exception:
            self._server.force_exit = True
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._sock.close()

    def release(self, run: str) -> None:
        """Lets the page of `run` start emitting."""
        self._loop.call_soon_threadsafe(lambda: self._event(run).set())

    async def report(self, run: str, timeout_s: float) -> dict[str, Any] | None:
        """The page's own report for `run`, or None if it did not come in time."""
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self._future(run)), timeout_s)
        except TimeoutError:
            return None

    def _event(self, run: str) -> asyncio.Event:
        return self._go.setdefault(run, asyncio.Event())

    def _future(self, run: str) -> concurrent.futures.Future[dict[str, Any]]:
        with self._lock:
            return self._reports.setdefault(run, concurrent.futures.Future())

    @staticmethod
    def _page(body: bytes) -> Any:
        async def page(_: Request) -> Response:
            return Response(body, media_type="text/html; charset=utf-8", headers=_NO_STORE)
        return page

    async def _go_handler(self, request: Request) -> Response:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event(request.query_params.get("run", "")).wait(),
                                   _GO_TIMEOUT_S)
        return Response("go", headers=_NO_STORE)

    async def _report_handler(self, request: Request) -> Response:
        future = self._future(request.query_params.get("run", ""))
        if not future.done():
            future.set_result(await request.json())
        return JSONResponse({"ok": True})


__all__ = ["StressServer"]
