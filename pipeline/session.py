"""BrowserSession: one browser context, one recorded page, one workflow.

Runs as the Ray actor `session:<id>` holding a `browser` slot. Its Chromium is either
its own or its node's shared one (a `SharedBrowser`: the node's BrowserHost actor),
which it drives through its own Playwright either way. The class is plain Python; its
only links to other actors are a `BatchSink` and a `SharedBrowser`, so it runs without
Ray too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from playwright.async_api import Browser, BrowserContext, Page, Playwright
from playwright.async_api import Error as PlaywrightError

from pipeline.browser import launch_chromium, resolve_executable, start_playwright
from pipeline.config import Settings
from pipeline.errors import BrowserLaunchError, InvalidTransition
from pipeline.metrics import SessionMetrics
from pipeline.models import (
    SESSION_TRANSITIONS,
    SessionSpec,
    SessionState,
    SessionStatus,
    StepState,
    StepStatus,
)
from pipeline.protocol import PageBatch
from pipeline.recorder import PageRecorder, init_script
from pipeline.steps import Step
from pipeline.workflow import run_step

if TYPE_CHECKING:
    from pipeline.demo_site import DemoSite

_log = logging.getLogger(__name__)
_MAX_RECOVERIES = 3
_DRAIN_TIMEOUT_S = 5.0


class BatchSink(Protocol):
    """Where a session's batches go, in order (its stream in the node's streamer actor in
    production: pipeline/actors.py)."""

    async def push(self, batches: list[PageBatch]) -> int: ...

    async def close(self) -> None: ...


class SharedBrowser(Protocol):
    """A node's shared Chromium (the BrowserHost actor in production)."""

    async def endpoint(self, executable: str | None, failed: str | None = None) -> str: ...


class BrowserSession:
    """A session is created, optionally warmed up (Chromium launched ahead of need), then
    started with its spec, and stopped."""

    def __init__(self, session_id: str, settings: Settings, sink: BatchSink | None,
                 metrics: SessionMetrics | None = None,
                 host: SharedBrowser | None = None) -> None:
        """With a `host` the session opens its context in that shared Chromium; without
        one it launches a Chromium of its own."""
        self.session_id = session_id
        self._log = logging.LoggerAdapter(_log, {"session_id": session_id})
        self._metrics = metrics
        self._spec = SessionSpec(demo=True)  # replaced by start()
        self._settings = settings
        self._sink = sink
        self._state = SessionState.PENDING
        self._steps: list[Step] = []
        self._step_status: list[StepStatus] = []
        self._start_url: str | None = None
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._error: str | None = None
        self._restarts = 0
        self._outbox: list[PageBatch] = []
        self._outbox_ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sender: asyncio.Task[None] | None = None
        self._launching: asyncio.Task[None] | None = None
        self._playwright: Playwright | None = None
        self._host = host
        self._endpoint: str | None = None  # the shared Chromium last connected to
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._recorder: PageRecorder | None = None
        self._demo_site: DemoSite | None = None
        self._last_url: str | None = None
        self._stopped = asyncio.Event()
        self._closing = False

    def set_sink(self, sink: BatchSink) -> None:
        if self._state is not SessionState.PENDING:
            raise InvalidTransition(f"session {self.session_id}", self._state, "connect")
        self._sink = sink

    def use_host(self, host: SharedBrowser) -> None:
        """Opens the session in `host`'s shared Chromium instead of launching one."""
        if self._state is not SessionState.PENDING or self._browser is not None:
            raise InvalidTransition(f"session {self.session_id}", self._state, "change browser")
        self._host = host

    # -- lifecycle -------------------------------------------------------------------------

    async def warm_up(self) -> None:
        """Starts Playwright and Chromium now, so `start` only opens a page."""
        if self._state is not SessionState.PENDING:
            raise InvalidTransition(f"session {self.session_id}", self._state, "warm up")
        if self._playwright is None:
            self._playwright = await start_playwright(self._settings)
        if self._browser is None:
            await self._connect_browser()

    async def start(self, spec: SessionSpec) -> SessionStatus:
        """Opens the first page of `spec`; the workflow then runs on its own."""
        if self._state.ended:  # stopped before it got going
            return self.status()
        if self._sink is None:
            raise InvalidTransition(f"session {self.session_id}", self._state, "start unconnected")
        self._spec = spec
        self._steps = list(spec.steps)
        self._step_status = [StepStatus(index=i, action=s.action)
                             for i, s in enumerate(self._steps)]
        self._start_url = str(spec.url) if spec.url else None
        self._move(SessionState.STARTING)
        self._started_at = time.time()
        self._launching = asyncio.create_task(self._launch(), name="launch")
        await asyncio.wait({self._launching})
        if self._state is not SessionState.STARTING:  # stop() came first and owns the shutdown
            await self._stopped.wait()
            return self.status()
        exc = self._launching.exception()
        if exc is not None:
            self._error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self._log.error("session %s failed to start: %s", self.session_id, self._error)
            await self._shutdown(SessionState.FAILED)
            return self.status()
        self._move(SessionState.RUNNING)
        self._log.info("session %s running at %s", self.session_id, self._start_url)
        self._spawn(self._run_workflow(), "workflow")
        self._spawn(self._stop_after(self._spec.max_duration_s), "deadline")
        return self.status()

    async def _launch(self) -> None:
        if self._spec.demo:
            await self._start_demo_site()
        self._sender = asyncio.create_task(self._send_batches(), name="send-batches")
        if self._playwright is None:
            self._playwright = await start_playwright(self._settings)
        await self._open_page()
        assert self._page is not None and self._start_url is not None
        await self._page.goto(self._start_url, wait_until="load", timeout=30_000)

    async def stop(self) -> SessionStatus:
        """Idempotent; returns once the browser is closed and every batch is handed on."""
        if self._state in (SessionState.STOPPING, SessionState.STOPPED, SessionState.FAILED):
            await self._stopped.wait()
            return self.status()
        await self._shutdown(SessionState.STOPPED)
        return self.status()

    def status(self) -> SessionStatus:
        url = self._page.url if self._page is not None and not self._page.is_closed() else None
        return SessionStatus(
            state=self._state,
            url=url or self._last_url,
            started_at=self._started_at,
            ended_at=self._ended_at,
            steps=[s.model_copy() for s in self._step_status],
            error=self._error,
            browser_restarts=self._restarts,
            start_url=self._start_url,
        )

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    async def wait_stopped(self) -> SessionStatus:
        await self._stopped.wait()
        return self.status()

    # -- internals -------------------------------------------------------------------------

    def _move(self, state: SessionState) -> None:
        if state not in SESSION_TRANSITIONS[self._state]:
            raise InvalidTransition(f"session {self.session_id}", self._state, state)
        self._state = state

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _start_demo_site(self) -> None:
        from pipeline.demo_site import DemoSite
        from pipeline.demo_workflow import demo_steps

        self._demo_site = DemoSite()
        await self._demo_site.start()
        self._start_url = self._demo_site.url + "/"
        self._steps = demo_steps(self._demo_site.url)
        self._step_status = [StepStatus(index=i, action=s.action)
                             for i, s in enumerate(self._steps)]

    async def _open_page(self) -> None:
        assert self._playwright is not None
        if self._browser is None or not self._browser.is_connected():
            await self._connect_browser()
        assert self._browser is not None
        viewport = self._spec.viewport
        self._context = await self._browser.new_context(
            viewport={"width": viewport.width, "height": viewport.height}
        )
        self._page = await self._context.new_page()
        self._page.on("crash", lambda _: self._on_crash("page crashed"))
        self._page.on("framenavigated", self._on_navigated)
        self._recorder = PageRecorder(init_script(self._settings), self._enqueue)
        await self._recorder.attach(self._context, self._page)

    async def _connect_browser(self) -> None:
        assert self._playwright is not None
        if self._host is None:
            browser = await launch_chromium(self._playwright, self._settings)
        else:
            executable = resolve_executable(self._playwright, self._settings.chromium)
            # Reconnecting after a crash names the lost endpoint, so the host replaces it.
            self._endpoint = await self._host.endpoint(executable, self._endpoint)
            try:
                browser = await self._playwright.chromium.connect(self._endpoint)
            except PlaywrightError as exc:
                raise BrowserLaunchError(executable, str(exc).splitlines()[0]) from exc
        browser.on("disconnected", lambda _: self._on_crash("browser disconnected"))
        self._browser = browser

    def _on_navigated(self, frame: Any) -> None:
        if self._page is not None and frame == self._page.main_frame:
            self._last_url = frame.url

    def _enqueue(self, batch: PageBatch) -> None:
        self._outbox.append(batch)
        self._outbox_ready.set()

    async def _send_batches(self) -> None:
        """Hands batches on in order, as many per call as have piled up."""
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self._outbox:
                batches, self._outbox = self._outbox, []
                try:
                    assert self._sink is not None
                    await self._sink.push(batches)
                except Exception as exc:
                    self._error = f"stream lost: {exc}".splitlines()[0]
                    self._log.error("session %s: %s", self.session_id, self._error)
                    if self._state in (SessionState.RUNNING, SessionState.IDLE):
                        self._spawn(self._shutdown(SessionState.FAILED), "fail")
                    return
            if self._closing:
                return

    async def _run_workflow(self) -> None:
        delay = self._settings.step_delay_ms / 1000.0
        for status, step in zip(self._step_status, self._steps, strict=True):
            status.state, status.started_at = StepState.RUNNING, time.time()
            try:
                assert self._page is not None
                await run_step(self._page, step)
            except asyncio.CancelledError:
                status.state, status.ended_at = StepState.SKIPPED, time.time()
                raise
            except Exception as exc:
                status.state, status.ended_at = StepState.FAILED, time.time()
                status.error = str(exc).splitlines()[0]
                self._error = f"step {status.index} ({status.action}) failed: {status.error}"
                self._log.warning("session %s: %s", self.session_id, self._error)
                for rest in self._step_status[status.index + 1:]:
                    rest.state = StepState.SKIPPED
                break
            status.state, status.ended_at = StepState.DONE, time.time()
            if delay:
                await asyncio.sleep(delay)
        if self._state is SessionState.RUNNING:
            self._move(SessionState.IDLE)
            self._log.info("session %s workflow finished", self.session_id)
            if self._spec.close_when_done:
                self._spawn(self.stop(), "stop")

    async def _stop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._log.info("session %s reached its time limit", self.session_id)
        await self.stop()

    def _on_crash(self, reason: str) -> None:
        if self._state in (SessionState.RUNNING, SessionState.IDLE):
            self._spawn(self._recover(reason), "recover")

    async def _recover(self, reason: str) -> None:
        self._restarts += 1
        if self._metrics is not None:
            self._metrics.restarted("browser")
        self._log.warning("session %s: %s, restart %d", self.session_id, reason, self._restarts)
        if self._restarts > _MAX_RECOVERIES:
            self._error = f"{reason}; gave up after {_MAX_RECOVERIES} restarts"
            self._log.error("session %s: %s", self.session_id, self._error)
            await self._shutdown(SessionState.FAILED)
            return
        with contextlib.suppress(Exception):
            if self._recorder is not None:
                await self._recorder.detach()
            if self._context is not None:
                await self._context.close()
        try:
            await self._open_page()
            assert self._page is not None
            await self._page.goto(self._last_url or self._start_url or "about:blank",
                                  wait_until="load", timeout=30_000)
        except Exception as exc:
            self._error = f"recovery failed: {exc}".splitlines()[0]
            await self._shutdown(SessionState.FAILED)

    async def _shutdown(self, final: SessionState) -> None:
        """Stop input, close the browser, drain batches, close the stream."""
        if self._state not in (SessionState.STOPPING,):
            self._move(SessionState.STOPPING if final is SessionState.STOPPED else final)
        current = asyncio.current_task()
        if self._launching is not None and not self._launching.done():
            self._launching.cancel()
            await asyncio.wait({self._launching})
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        await asyncio.gather(*(t for t in self._tasks if t is not current),
                             return_exceptions=True)
        await self._close_browser()
        await self._drain()
        if self._demo_site is not None:
            with contextlib.suppress(Exception):
                await self._demo_site.stop()
        if self._state is SessionState.STOPPING:
            self._move(final)
        self._ended_at = time.time()
        self._log.info("session %s %s", self.session_id, self._state)
        self._stopped.set()

    async def _close_browser(self) -> None:
        # The final pagehide flush reaches the binding before the page goes away.
        if self._page is not None and not self._page.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._page.evaluate("dispatchEvent(new Event('pagehide'))"), 2.0
                )
        if self._recorder is not None:
            await self._recorder.detach()
        if self._browser is not None:
            # A shared Chromium only loses this session's context and connection.
            with contextlib.suppress(Exception):
                await self._browser.close()
        if self._playwright is not None:
            with contextlib.suppress(Exception):
                await self._playwright.stop()

    async def _drain(self) -> None:
        sender, self._sender = self._sender, None
        if sender is None:
            return
        self._closing = True
        self._outbox_ready.set()
        try:
            # Shield only the final flush: what was recorded must reach the streamer.
            await asyncio.wait_for(asyncio.shield(sender), _DRAIN_TIMEOUT_S)
        except TimeoutError:
            sender.cancel()
            self._log.error("session %s: %d batches not handed on within %.0f s",
                       self.session_id, len(self._outbox), _DRAIN_TIMEOUT_S)
        if self._sink is not None:
            with contextlib.suppress(Exception):
                await self._sink.close()


__all__ = ["BatchSink", "BrowserSession", "SharedBrowser"]
