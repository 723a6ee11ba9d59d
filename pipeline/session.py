"""BrowserSession: one browser context, one recorded page, one workflow, and what keeps
them going.

Runs as the Ray actor `session:<id>` holding a `browser` slot. Its Chromium is either
its own or its node's shared one (a `SharedBrowser`: the node's BrowserHost actor),
which it drives through its own Playwright either way. The class is plain Python; its
only links to other actors are a `BatchSink`, a `SharedBrowser` and a `Supervisor`, so
it runs without Ray too.

What it survives, and how (each is in its status and, as a warning, in its history):
- its browser or renderer crashing: the page is reopened at its URL and the running step
  runs again, within a crash budget (pipeline/crashes.py);
- a page that does not open (pipeline/navigation.py) or is not recorded
  (pipeline/snapshot_watch.py): reported, the session runs on;
- requests to inside addresses, with RRSTREAM_BLOCK_PRIVATE_NETWORKS
  (pipeline/network_guard.py, and under it pipeline/egress_proxy.py, which every
  connection of its context goes through): refused and reported, the session runs on;
- its stream going away: with a supervisor it waits for `attach_stream`;
- a page that never yields: `stop()` crashes its renderer and returns within 5 s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from playwright.async_api import Browser, BrowserContext, Download, Frame, Page, Playwright
from playwright.async_api import Error as PlaywrightError

from pipeline.asset_capture import AssetCapture, AssetSink
from pipeline.asset_urls import AssetUrls
from pipeline.browser import (
    BrowserEndpoint,
    connect_shared,
    launch_chromium,
    resolve_executable,
    start_playwright,
)
from pipeline.browser_dirs import BrowserDir, sweep
from pipeline.busy_watch import BusyWatch
from pipeline.canvas_meter import CanvasMeter
from pipeline.checkpoints import CheckpointReporter
from pipeline.config import Settings
from pipeline.control import ControlLog, control_batch, next_state
from pipeline.crashes import CrashBudget, CrashKind
from pipeline.egress_proxy import EgressProxy, ProxyState
from pipeline.error_events import ErrorEvents
from pipeline.errors import (
    BrowserLaunchError,
    InvalidTransition,
    NavigationFailed,
    RRStreamError,
    StepFailed,
    describe_error,
    unwrap,
)
from pipeline.event_rate import sampling_levels
from pipeline.metrics import SessionMetrics
from pipeline.models import (
    SESSION_TRANSITIONS,
    Checkpoint,
    ControlAction,
    SessionSpec,
    SessionState,
    SessionStatus,
    WarningKind,
)
from pipeline.navigation import open_url, page_gone, timed_out
from pipeline.network_guard import NetworkGuard
from pipeline.network_policy import AddressPolicy, Refusal, settings_policy
from pipeline.outbox import BatchSink, Outbox
from pipeline.page_guard import Notice, PageGuard, guard_script
from pipeline.page_limits import PageLimits
from pipeline.protocol import InputEvent, PageBatch
from pipeline.recorder import PageRecorder, StillOver, init_script
from pipeline.snapshot_watch import SnapshotWatch
from pipeline.steps import Step
from pipeline.takeover import SessionHooks, Takeover
from pipeline.teardown import bounded, time_left
from pipeline.warning_log import WarningLog
from pipeline.workflow import Workflow, run_step

if TYPE_CHECKING:
    from pipeline.demo_site import DemoSite

_log = logging.getLogger(__name__)
# stop() returns within 5 s whatever the page does: the browser part gets this much, the
# final hand-over of batches the rest.
_STOP_BROWSER_S = 3.0
_STOP_WITHIN_S = 4.0
_STOP_ALL_S = 4.8
_FLUSH_S = 1.0  # the final pagehide flush; a page that does not answer is crashed
_ANSWER_S = 2.0  # a page asked to take a checkout now
_HOST_RETRY_S = 10.0  # the node's browser host may be restarting (Ray restarts it)
_CRASH_NOTICE_S = 2.0  # a step's error can come a moment before its page's crash event
_LIVE = (SessionState.RUNNING, SessionState.PAUSED, SessionState.IDLE)
_LARGE_BATCH_CHARS = 4 * 2**20  # a batch this big is reported (a `large_batch` warning)
# Assets captured after the stream named their URLs are shown by a checkout this long
# after the first of them: one checkout for a page's late images and fonts, two a second
# at most.
_ASSETS_GATHER_S = 0.5


class SharedBrowser(Protocol):
    """A node's shared Chromium (the BrowserHost actor in production)."""

    async def endpoint(self, executable: str | None,
                       failed: BrowserEndpoint | None = None) -> BrowserEndpoint: ...


class Supervisor(Protocol):
    """Who restarts the session elsewhere if its actor dies (the registry in production).
    Both calls are fire-and-forget: the session never waits for its supervisor."""

    def report(self, session_id: str, checkpoint: Checkpoint) -> None:
        """Where the workflow is: called when a step starts or ends, the main frame's URL
        changes or the page was reopened after a crash; `checkpoint.version` grows."""

    def stream_lost(self, session_id: str) -> None:
        """A push to the session's stream failed; it waits for `attach_stream`."""


class BrowserSession:
    """A session is created, optionally warmed up (Chromium launched ahead of need), then
    started with its spec, and stopped."""

    def __init__(self, session_id: str, settings: Settings, sink: BatchSink | None,
                 metrics: SessionMetrics | None = None,
                 host: SharedBrowser | None = None,
                 supervisor: Supervisor | None = None,
                 policy: AddressPolicy | None = None) -> None:
        """With a `host` the session opens its context in that shared Chromium; without
        one it launches a Chromium of its own. Without a `supervisor` a lost stream
        fails the session. `policy` replaces the network policy the settings ask for
        (tests pass one whose resolver they control)."""
        self.session_id = session_id
        self._log = logging.LoggerAdapter(_log, {"session_id": session_id})
        self._metrics = metrics
        self._spec = SessionSpec(demo=True)  # replaced by start()
        self._settings = settings
        # What its browser loaded is served to viewers from the node's asset cache, and
        # named in the stream instead of its URL (pipeline/asset_capture.py).
        self._asset_urls = AssetUrls()
        self._outbox = Outbox(sink, self._push_failed, self._use_receiver, self._handed_on,
                              self._asset_urls.rewrite if settings.asset_cache_bytes > 0
                              else None)
        self._assets = AssetCapture(self._asset_urls, self._asset_sink, self._log,
                                    self._assets_came_late)
        self._asset_checkout: asyncio.Task[None] | None = None
        self._host = host
        self._supervisor = supervisor
        self._state = SessionState.PENDING
        self._workflow = Workflow(session_id, [])
        self._start_url: str | None = None
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._error: str | None = None
        self._navigation_error: str | None = None
        self._recording_error: str | None = None
        self._warnings = WarningLog()
        self._errors = ErrorEvents(lambda: self._outbox.receiver)
        self._limits = PageLimits(settings.max_events_per_s, len(sampling_levels(settings)),
                                  self._warnings,
                                  max_event_bytes_per_s=settings.max_event_bytes_per_s)
        self._canvas = CanvasMeter()
        self._crashes = CrashBudget(settings.max_browser_crashes, settings.crash_window_s)
        self._restarts = 0
        self._stream_lost_at: float | None = None
        # Tasks: every background task is kept here until done.
        self._tasks: set[asyncio.Task[Any]] = set()
        self._launching: asyncio.Task[None] | None = None
        self._running_steps: asyncio.Task[None] | None = None
        self._recovering: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._busy_watching: asyncio.Task[None] | None = None
        self._unresponsive_since: float | None = None
        self._awaiting_stream: asyncio.Task[None] | None = None
        self._pending_crash: CrashKind | None = None
        # The browser.
        self._dir: BrowserDir | None = None  # TMPDIR of this session's Playwright driver
        self._playwright: Playwright | None = None
        self._endpoint: BrowserEndpoint | None = None  # the shared Chromium last connected to
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._recorder: PageRecorder | None = None
        self._guard: PageGuard | None = None
        self._demo_site: DemoSite | None = None
        policy = policy or settings_policy(settings)
        self._network_guard = (NetworkGuard(policy, self._blocked) if policy is not None
                               else None)
        # Only with the block on: a session without it pays nothing.
        self._egress = (EgressProxy(policy, self._network_guard.report)
                        if self._network_guard is not None else None)
        self._last_url: str | None = None  # the main frame's URL, or the one it failed to open
        self._control = ControlLog()  # pauses, resumes and added steps: who, when
        # A person in control from a viewer (pipeline/takeover.py).
        self._takeover = Takeover(session_id, SessionHooks(
            lambda: self._state, self._control_change, lambda: self._page, self._spawn),
            self._log)
        self._checkpoints = CheckpointReporter(
            session_id, (lambda cp: supervisor.report(session_id, cp)) if supervisor else None,
            lambda: self._last_url, self._control)
        self._stopped = asyncio.Event()

    def set_sink(self, sink: BatchSink) -> None:
        if self._state is not SessionState.PENDING:
            raise InvalidTransition(f"session {self.session_id}", self._state, "connect")
        self._outbox.sink = sink

    def use_host(self, host: SharedBrowser) -> None:
        """Opens the session in `host`'s shared Chromium instead of launching one."""
        if self._state is not SessionState.PENDING or self._browser is not None:
            raise InvalidTransition(f"session {self.session_id}", self._state, "change browser")
        self._host = host

    def set_supervisor(self, supervisor: Supervisor) -> None:
        if self._state is not SessionState.PENDING:
            raise InvalidTransition(f"session {self.session_id}", self._state, "supervise")
        self._supervisor = supervisor
        self._checkpoints.send = lambda cp: supervisor.report(self.session_id, cp)

    # -- lifecycle -------------------------------------------------------------------------

    async def warm_up(self) -> None:
        """Starts Playwright and Chromium now, so `start` only opens a page."""
        if self._state is not SessionState.PENDING:
            raise InvalidTransition(f"session {self.session_id}", self._state, "warm up")
        if self._browser is None:
            await self._connect_browser()

    async def start(self, spec: SessionSpec, resume: Checkpoint | None = None) -> SessionStatus:
        """Opens the first page of `spec`; the workflow then runs on its own.

        `resume` is where the session was when the actor running it died: the page opens
        at `resume.url` (else the start URL), the steps added to it are added again, the
        steps before `resume.step` keep the outcome they had, and the workflow runs on from
        `resume.step` (or stays paused, if it was). That step, which was running, runs
        again from its start (its `attempts` show it). A demo session's
        demo site is new, on new ports, so `resume.url` is moved to its origin.

        A first page that does not open is no failure: the session runs on, showing
        Chromium's error page, with the reason in `navigation_error`.
        """
        if self._state.ended:  # stopped before it got going
            return self.status()
        if self._outbox.sink is None:
            raise InvalidTransition(f"session {self.session_id}", self._state, "start unconnected")
        self._spec = spec
        self._workflow = self._new_workflow(list(spec.steps))
        self._start_url = str(spec.url) if spec.url else None
        if resume is not None:
            self._checkpoints.version = resume.version
        self._move(SessionState.STARTING)
        self._started_at = time.time()
        self._launching = asyncio.create_task(self._launch(resume), name="launch")
        await asyncio.wait({self._launching})
        if self._state is not SessionState.STARTING:  # stop() came first and owns the shutdown
            await self._stopped.wait()
            return self.status()
        exc = self._launching.exception()
        if exc is not None:
            self._error = f"could not start: {describe_error(unwrap(exc))}"
            self._log.error("session %s %s", self.session_id, self._error)
            await self._shutdown(SessionState.FAILED)
            return self.status()
        self._move(SessionState.PAUSED if self._workflow.paused else SessionState.RUNNING)
        self._log.info("session %s %s at %s%s", self.session_id, self._state, self._last_url,
                       f", resuming at step {resume.step}" if resume is not None else "")
        self._checkpoints.changed(self._workflow, force=True)
        self._run_steps()
        self._spawn(self._stop_after(self._spec.max_duration_s), "deadline")
        return self.status()

    async def stop(self) -> SessionStatus:
        """Idempotent; returns within 5 s whatever the page does, once the browser is closed
        and every batch recorded is handed on."""
        if self._state in (SessionState.STOPPING, SessionState.STOPPED, SessionState.FAILED):
            await self._stopped.wait()
            return self.status()
        await self._shutdown(SessionState.STOPPED)
        return self.status()

    def attach_stream(self, sink: BatchSink) -> None:
        """The session's stream was reopened (its streamer restarted): batches go to `sink`
        from now on, starting with a checkout the page takes now; those queued for the old
        stream are dropped. Any live state; a no-op once the session ends."""
        if self._state.ended or self._state is SessionState.STOPPING:
            return
        waiter, self._awaiting_stream = self._awaiting_stream, None
        if waiter is not None:
            waiter.cancel()
        if self._stream_lost_at is not None:
            self._stream_lost_at = None
            self._warn(WarningKind.STREAM_LOST, "the stream was reopened")
        if self._state is SessionState.PENDING:
            self._outbox.sink = sink  # start() opens the page, which begins with a checkout
            return
        # The new stream must begin at a segment: batches pass from the page's next
        # checkout on, which it takes now.
        self._outbox.attach(sink)
        self._spawn(self._checkout_now(), "checkout")
        self._log.info("session %s streams to a reopened stream", self.session_id)

    def status(self) -> SessionStatus:
        url = self._page.url if self._page is not None and not self._page.is_closed() else None
        if url is None or not url.startswith(("http:", "https:")):
            url = self._last_url or url
        return SessionStatus(
            state=self._state,
            url=url,
            started_at=self._started_at,
            ended_at=self._ended_at,
            steps=[s.model_copy() for s in self._workflow.statuses],
            error=self._error,
            browser_restarts=self._restarts,
            start_url=self._start_url,
            navigation_error=self._navigation_error,
            recording_error=self._recording_error,
            browser_crashes=self._crashes.counts[CrashKind.BROWSER],
            page_crashes=self._crashes.counts[CrashKind.PAGE],
            stream_lost_at=self._stream_lost_at,
            blocked_requests=(self._network_guard.blocked
                              if self._network_guard is not None else 0),
            warnings=self._warnings.list(),
            unresponsive_since=self._unresponsive_since,
            dialogs_dismissed=self._limits.dialogs,
            popups_closed=self._limits.popups,
            sampling_level=self._limits.sampling_level,
            stretches_dropped=self._limits.stretches_dropped,
            canvas_bytes=self._canvas.total,
            canvas_bytes_per_s=self._canvas.per_s(),
            assets_captured=self._assets.captured,
            driven_by=self._takeover.driven_by,
            controller=self._takeover.holder_label,
            control=self._control.list(),
            control_dropped=self._control.dropped,
        )

    # -- workflow control -----------------------------------------------------------------

    async def pause(self, by: str) -> SessionStatus:
        """No step starts until `resume`; the one running finishes first. The page stays
        live and recorded. `by`: who asked (in the status and the recording). Raises
        ControlRefused unless the session is running."""
        self._control_change(ControlAction.PAUSE, by)
        return self.status()

    async def resume(self, by: str) -> SessionStatus:
        """The workflow runs on from its next step (the session is idle at once if it has
        none left). Raises ControlRefused unless the session is paused."""
        self._control_change(ControlAction.RESUME, by)
        return self.status()

    async def add_steps(self, steps: list[Step], by: str) -> SessionStatus:
        """`steps` run after the others: at once if the session is idle (it runs again),
        after `resume` if it is paused. Raises ControlRefused in any other state, or past
        MAX_STEPS in all."""
        self._control_change(ControlAction.STEPS, by, steps)
        return self.status()

    # -- a person in control from a viewer (pipeline/takeover.py) ---------------------------

    async def take_control(self, holder_id: str, label: str, expires_at: float) -> SessionStatus:
        """`holder_id` (the gateway's name for a control link's socket) takes control of the
        page until `expires_at` at most; a running workflow pauses at its next step boundary.
        TakeoverRefused while another holds it; ControlRefused in a state that takes none."""
        await self._takeover.take(holder_id, label, expires_at)
        return self.status()

    async def renew_control(self, holder_id: str) -> None:
        """The holder's socket is still open: its lease runs on (TakeoverRefused if it lost
        control meanwhile)."""
        self._takeover.renew(holder_id)

    async def control_input(self, holder_id: str, events: list[InputEvent]) -> None:
        """Input for the page from the person in control, delivered in order."""
        self._takeover.deliver(holder_id, events)

    async def hand_back(self, holder_id: str, reason: str | None = None) -> SessionStatus:
        """Control goes back to the workflow, which resumes if the take paused it."""
        await self._takeover.hand_back(holder_id, reason)
        return self.status()

    def _control_change(self, action: ControlAction, by: str,
                        steps: list[Step] | None = None, reason: str | None = None) -> None:
        state = next_state(self.session_id, self._state, action)
        self._takeover.allows(action, self._state)
        if steps is not None:
            self._workflow.append(steps)  # refused past MAX_STEPS: nothing changed then
        elif state is SessionState.PAUSED:
            self._workflow.pause()  # a pause, or a take of a running workflow
        elif action is ControlAction.RESUME:
            self._workflow.resume()
        change = self._control.add(action, by, len(steps) if steps is not None else None,
                                   reason)
        self._outbox.receiver(control_batch(change))
        if state is not self._state:
            self._move(state)
        self._checkpoints.now(self._workflow)
        self._log.info("session %s: %s by %s%s; now %s", self.session_id, action, by,
                       f" ({change.steps} steps)" if change.steps is not None else "",
                       self._state)
        if state is SessionState.RUNNING:
            self._drive()

    def _drive(self) -> None:
        """Runs the workflow on after a resume or added steps, unless a run is under way
        (it takes them up itself) or the page is being reopened (which runs it after)."""
        if any(t is not None and not t.done() for t in (self._running_steps,
                                                         self._recovering)):
            return
        if self._workflow.done:
            self._workflow_finished()
        else:
            self._run_steps()

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    async def wait_stopped(self) -> SessionStatus:
        await self._stopped.wait()
        return self.status()

    # -- internals: states, tasks, warnings ------------------------------------------------

    def _move(self, state: SessionState) -> None:
        if state not in SESSION_TRANSITIONS[self._state]:
            raise InvalidTransition(f"session {self.session_id}", self._state, state)
        self._state = state

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _warn(self, kind: WarningKind, message: str, url: str | None = None) -> None:
        self._warnings.add(kind, message, url)

    def _fail(self, reason: str) -> None:
        """Ends the session as failed, from a callback or a task of its own."""
        if self._state not in (SessionState.STARTING, *_LIVE):
            return
        self._error = reason
        self._errors.add("session", f"the session failed: {reason}")
        self._log.error("session %s failed: %s", self.session_id, reason)
        self._spawn(self._shutdown(SessionState.FAILED), "fail")

    # -- internals: opening the browser and the page ---------------------------------------

    async def _launch(self, resume: Checkpoint | None) -> None:
        if self._spec.demo:
            await self._start_demo_site()
        if resume is not None:
            self._workflow.restore(resume)
            self._control.restore(resume.control, resume.control_dropped)
        self._outbox.start()
        await self._open_context()
        await self._open_page()
        url = self._resume_url(resume) or self._start_url
        assert url is not None
        await self._open(url)

    async def _start_demo_site(self) -> None:
        from pipeline.demo_site import DemoSite
        from pipeline.demo_workflow import demo_steps

        self._demo_site = DemoSite()
        await self._demo_site.start()
        if self._network_guard is not None:  # it is on loopback, and it is ours
            self._network_guard.policy.allow_origin(self._demo_site.url)
            self._network_guard.policy.allow_origin(self._demo_site.widget_url)
        self._start_url = self._demo_site.url + "/"
        self._workflow = self._new_workflow(demo_steps(self._demo_site.url))

    def _new_workflow(self, steps: list[Step]) -> Workflow:
        return Workflow(self.session_id, steps, self._steps_changed,
                        self._settings.step_delay_ms / 1000.0)

    def _steps_changed(self) -> None:
        self._checkpoints.changed(self._workflow)

    def _resume_url(self, resume: Checkpoint | None) -> str | None:
        """Where a resumed session opens. A demo site restarts on new ports, so a URL of
        the old one moves to the new one's origin (path and query kept): rewriting keeps
        the demo site's ports free for the OS to pick, where a fixed port per session
        could be taken by then, or on another node."""
        if resume is None or not resume.url:
            return None
        if self._demo_site is None:
            return resume.url
        parts, origin = urlsplit(resume.url), urlsplit(self._demo_site.url)
        if parts.scheme not in ("http", "https"):
            return None
        return urlunsplit((origin.scheme, origin.netloc, parts.path, parts.query,
                           parts.fragment))

    async def _ensure_playwright(self) -> Playwright:
        if self._playwright is None:
            await asyncio.to_thread(sweep)
            self._dir = await asyncio.to_thread(BrowserDir.create, "session")
            self._playwright = await start_playwright(self._settings, self._dir.path)
        return self._playwright

    async def _connect_browser(self) -> None:
        playwright = await self._ensure_playwright()
        if self._host is None:
            browser = await launch_chromium(playwright, self._settings)
        else:
            browser = await self._connect_shared(playwright)
        browser.on("disconnected", self._on_browser_disconnected)
        self._browser = browser

    async def _connect_shared(self, playwright: Playwright) -> Browser:
        """Connects to the node's shared Chromium. Its host may be restarting (Ray brings a
        killed one back), so what fails for another reason than the host's own error is
        tried again for a few seconds."""
        assert self._host is not None
        executable = resolve_executable(playwright, self._settings.chromium)
        deadline = time.monotonic() + _HOST_RETRY_S
        delay = 0.1
        while True:
            try:
                # Naming the lost endpoint after a crash makes the host replace it.
                self._endpoint = await self._host.endpoint(executable, self._endpoint)
                return await connect_shared(playwright, self._endpoint)
            except Exception as exc:
                cause = unwrap(exc)
                if isinstance(cause, RRStreamError):
                    raise cause from None
                if time.monotonic() + delay > deadline:
                    raise BrowserLaunchError(
                        executable, f"the node's shared browser could not be reached for "
                        f"{_HOST_RETRY_S:g} s ({describe_error(cause)})") from exc
                # Said once per reconnection; the tries after it are routine.
                self._log.log(logging.WARNING if delay == 0.1 else logging.DEBUG,
                              "session %s: the node's shared browser is unreachable (%s); "
                              "trying again for up to %g s", self.session_id,
                              describe_error(cause), _HOST_RETRY_S)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _open_context(self) -> None:
        if self._browser is None or not self._browser.is_connected():
            await self._connect_browser()
        assert self._browser is not None
        viewport = self._spec.viewport
        proxy: dict[str, Any] = {}
        if self._egress is not None:
            # Every connection of the context, loopback too, goes through the session's
            # egress proxy, which connects only to addresses the policy checked; it
            # outlives a crashed context and serves the next.
            if self._egress.state is ProxyState.CREATED:
                await self._egress.start()
            proxy["proxy"] = self._egress.playwright_proxy()
        self._context = await self._browser.new_context(
            viewport={"width": viewport.width, "height": viewport.height},
            accept_downloads=True,  # so that a download is seen (and cancelled), not lost
            permissions=[],  # none granted; the guard denies each explicitly
            **proxy,
        )
        if self._network_guard is not None:
            await self._network_guard.install(self._context)
        if self._settings.asset_cache_bytes > 0:
            self._assets.install(self._context)
        self._guard = PageGuard(guard_script(self._settings), self._on_notice)
        await self._guard.install(self._context)
        self._recorder = PageRecorder(init_script(self._settings, self._spec),
                                      self._outbox.receiver, self._still_over)
        await self._recorder.install(self._context)

    async def _open_page(self) -> None:
        assert self._context is not None and self._recorder is not None
        assert self._guard is not None
        self._guard.expect_page()
        page = await self._context.new_page()
        self._page = page
        page.on("crash", self._on_page_crash)
        page.on("framenavigated", self._on_navigated)
        page.on("domcontentloaded", self._on_loaded)
        page.on("download", self._on_download)
        page.on("pageerror", self._on_page_error)
        if self._network_guard is not None:
            await self._network_guard.watch(page)
        await self._guard.attach(self._context, page)
        await self._recorder.attach(self._context, page)

    async def _open(self, url: str) -> None:
        """Opens `url`; a page that does not open is reported, not raised."""
        assert self._page is not None
        self._last_url = url
        try:
            await open_url(self._page, url, timeout_ms=self._settings.navigation_timeout_s * 1000)
        except NavigationFailed as exc:
            await self._navigation_failed(self._explained(exc))

    def _explained(self, exc: NavigationFailed) -> NavigationFailed:
        """`exc`, saying which address was refused when the network policy caused it."""
        return (self._network_guard.explain(exc) if self._network_guard is not None
                else exc)

    def _blocked(self, refusal: Refusal) -> None:
        self._warn(WarningKind.BLOCKED_REQUEST, f"blocked: {refusal}", refusal.url)
        self._log.warning("session %s blocked a request: %s", self.session_id, refusal)

    async def _navigation_failed(self, exc: NavigationFailed) -> None:
        self._navigation_error = str(exc)
        self._warn(WarningKind.NAVIGATION, str(exc), exc.url)
        self._log.warning("session %s: %s", self.session_id, exc)
        if timed_out(exc) and self._recorder is not None:
            # Else the page would change whenever Chromium gives up on it, minutes later.
            await bounded(self._recorder.stop_loading(), _ANSWER_S,
                          "stopping the navigation that timed out", self._log)

    # -- internals: page events ------------------------------------------------------------

    def _on_navigated(self, frame: Frame) -> None:
        page = self._page
        if page is None or frame != page.main_frame:
            return
        url = frame.url
        if not url.startswith(("http:", "https:")):
            return  # Chromium's error page: the URL it failed to open stays the one to retry
        self._navigation_error = None
        if url != self._last_url:
            self._last_url = url
            self._checkpoints.changed(self._workflow)

    def _on_loaded(self, page: Page) -> None:
        if page is not self._page:
            return
        for watching in (self._watching, self._busy_watching):
            if watching is not None:
                watching.cancel()
        self._watching = self._busy_watching = None
        self._recording_error = None  # a new document: what was said of the last is moot
        self._unresponsive_since = None
        url = page.url
        if url.startswith(("http:", "https:")):
            self._watching = self._spawn(self._watch_snapshot(url), "snapshot-watch")
            self._busy_watching = self._spawn(self._watch_busy(url), "busy-watch")

    async def _watch_busy(self, url: str) -> None:
        recorder = self._recorder
        assert recorder is not None

        def changed(since: float | None) -> None:
            self._unresponsive_since = since
            message = (f"the page's main thread stopped answering at {url} (a script that "
                       "never yields, or a task of many seconds); its renderer is busy "
                       "until it ends or the session stops" if since is not None
                       else f"the page at {url} answers again")
            self._warnings.add(WarningKind.UNRESPONSIVE, message, url,
                               key=f"unresponsive:{since is None}")
            self._log.warning("session %s: %s", self.session_id, message)

        try:
            await BusyWatch(changed).watch(recorder.state)
        except (PlaywrightError, RRStreamError) as exc:  # it navigated or went away meanwhile
            self._log.info("session %s: the busy check of %s ended: %s", self.session_id,
                           url, describe_error(exc))

    async def _watch_snapshot(self, url: str) -> None:
        assert self._recorder is not None
        watch = SnapshotWatch(self._settings.snapshot_timeout_s,
                              lambda problem: self._recording_problem(url, problem))
        try:
            await watch.watch(self._recorder, url)
        except (PlaywrightError, RRStreamError) as exc:  # it navigated or went away meanwhile
            self._log.info("session %s: the snapshot check of %s ended: %s", self.session_id,
                           url, describe_error(exc))

    def _recording_problem(self, url: str, problem: str | None) -> None:
        if problem is None:
            self._recording_error = None
            self._warn(WarningKind.RECORDING, f"{url} is recorded again", url)
            self._log.info("session %s: %s is recorded again", self.session_id, url)
            return
        if problem != self._recording_error:
            self._warn(WarningKind.RECORDING, problem, url)
            self._log.warning("session %s: %s", self.session_id, problem)
        self._recording_error = problem

    def _on_download(self, download: Download) -> None:
        message = (f"the page started a download of {download.suggested_filename!r} "
                   f"from {download.url}; it was cancelled")
        self._warn(WarningKind.DOWNLOAD, message, download.url)
        self._log.warning("session %s: %s", self.session_id, message)
        self._spawn(self._cancel_download(download), "cancel-download")

    def _on_page_error(self, error: PlaywrightError) -> None:
        self._errors.add("page", f"the page threw: {error.message}")

    def _on_notice(self, notice: Notice) -> None:
        self._limits.notice(notice)

    def _handed_on(self, batches: list[PageBatch]) -> None:
        """The outbox handed on `batches`: a page over RRSTREAM_MAX_EVENTS_PER_S is recorded
        coarser, or paused, and one over RRSTREAM_MAX_EVENT_BYTES_PER_S paused
        (pipeline/event_rate.py). A checkout's bytes are rrweb's own doing, not counted."""
        events = nbytes = 0
        newest = 0.0
        for batch in batches:
            self._canvas.add(batch.canvas_chars)
            events += batch.event_count
            newest = max(newest, batch.last_ts)
            if not batch.checkout:
                nbytes += len(batch.text)
            if len(batch.text) >= _LARGE_BATCH_CHARS:
                self._large_batch(batch)
        decision = self._limits.counted(events, nbytes, newest / 1000.0 if newest else None)
        if decision is not None and self._recorder is not None and self._state in _LIVE:
            self._spawn(self._limits.apply(decision, self._recorder), "event-rate")

    def _still_over(self, notice: StillOver) -> None:
        """The paused page is still over a limit (pipeline/event_rate.py `still_over`)."""
        decision = self._limits.still_over(notice.per_s, notice.bytes_per_s, notice.page_time)
        if self._recorder is not None and self._state in _LIVE:
            self._spawn(self._limits.apply(decision, self._recorder), "event-rate")

    def _large_batch(self, batch: PageBatch) -> None:
        what = "snapshot" if batch.checkout else "batch of changes"
        url = self._page.url if self._page is not None else None
        self._warnings.add(WarningKind.LARGE_BATCH,
                           f"the page sent a {len(batch.text) / 1e6:.1f} MB {what} at once "
                           f"(a very large DOM); it came in pieces, so as not to hold up "
                           f"other sessions", url, key="large-batch")

    async def _cancel_download(self, download: Download) -> None:
        try:
            await asyncio.wait_for(download.cancel(), _ANSWER_S)
        except (TimeoutError, PlaywrightError) as exc:
            self._log.warning("session %s: cancelling the download of %s failed: %s",
                              self.session_id, download.url, describe_error(exc))

    # -- internals: the workflow -----------------------------------------------------------

    def _run_steps(self) -> None:
        if self._state is SessionState.RUNNING:
            self._running_steps = self._spawn(self._run_workflow(), "workflow")

    async def _run_workflow(self) -> None:
        try:
            await self._workflow.run(_PageSteps(self))
        except StepFailed as exc:
            self._error = f"step {exc.index} ({exc.action}) failed: {exc.reason}"
            self._errors.add("step", self._error)
            self._log.warning("session %s: %s", self.session_id, self._error)
        if self._workflow.done and self._state is SessionState.RUNNING:
            self._workflow_finished()

    def _workflow_finished(self) -> None:
        self._move(SessionState.IDLE)
        self._log.info("session %s workflow finished", self.session_id)
        if self._spec.close_when_done:
            self._spawn(self.stop(), "stop")

    async def _stop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._log.info("session %s reached its time limit", self.session_id)
        await self.stop()

    # -- internals: crashes ----------------------------------------------------------------

    def _on_browser_disconnected(self, browser: Browser) -> None:
        if browser is self._browser:
            self._crashed(CrashKind.BROWSER)

    def _on_page_crash(self, page: Page) -> None:
        if page is self._page:
            self._crashed(CrashKind.PAGE)

    def _crashed(self, kind: CrashKind) -> None:
        """The page (or its whole browser) is gone: reopen it where it was, unless that is
        one crash too many."""
        if self._state not in _LIVE:
            return
        give_up = self._crashes.crashed(kind)
        if self._metrics is not None:
            self._metrics.restarted(kind.value)
        what = "the browser crashed" if kind is CrashKind.BROWSER else "the page crashed"
        self._warn(WarningKind.BROWSER_CRASH if kind is CrashKind.BROWSER
                   else WarningKind.PAGE_CRASH, what, self._last_url)
        if give_up is not None:
            self._fail(give_up)
            return
        self._restarts += 1
        self._log.warning("session %s: %s; reopening %s (restart %d)", self.session_id, what,
                          self._last_url, self._restarts)
        # The running step is cancelled and runs again once the page is back.
        for task in (self._running_steps, self._watching, self._busy_watching):
            if task is not None:
                task.cancel()
        if kind is CrashKind.BROWSER:
            # Its pages died with it: no event of theirs is a crash of its own.
            self._browser = self._page = None
        if self._pending_crash is not CrashKind.BROWSER:
            self._pending_crash = kind
        if self._recovering is None or self._recovering.done():
            self._recovering = self._spawn(self._recover(), "recover")

    async def _recover(self) -> None:
        while self._pending_crash is not None:
            kind, self._pending_crash = self._pending_crash, None
            try:
                await self._reopen(kind)
            except Exception as exc:
                if self._pending_crash is not None:
                    continue  # it crashed again meanwhile: counted, and reopened next turn
                self._fail(f"could not reopen the page after a {kind} crash: "
                           f"{describe_error(unwrap(exc))}")
                return
        self._log.info("session %s: page reopened at %s", self.session_id, self._last_url)
        self._checkpoints.changed(self._workflow, force=True)
        self._run_steps()

    async def _reopen(self, kind: CrashKind) -> None:
        page, self._page = self._page, None
        if kind is CrashKind.BROWSER:
            await self._open_context()  # reconnects first: the old context died with it
        elif page is not None:
            await bounded(page.close(), _ANSWER_S, "closing the crashed page", self._log)
        await self._open_page()
        await self._open(self._last_url or self._start_url or "about:blank")

    # -- internals: batches and the stream -------------------------------------------------

    def _use_receiver(self, receiver: Callable[[PageBatch], None]) -> None:
        if self._recorder is not None:
            self._recorder.on_batch = receiver

    async def _checkout_now(self) -> None:
        recorder = self._recorder
        if recorder is None or self._page is None:
            return  # the page is being (re)opened: its first snapshot starts the stream
        try:
            if not await asyncio.wait_for(recorder.checkout(), _ANSWER_S):
                await asyncio.wait_for(recorder.restart(), _ANSWER_S)
        except TimeoutError:
            self._log.warning("session %s: the page took no checkout within %.0f s (it is "
                              "busy); the reopened stream starts at its next one",
                              self.session_id, _ANSWER_S)
        except (PlaywrightError, RRStreamError) as exc:
            self._log.info("session %s: no checkout now (%s); the reopened stream starts at "
                           "the next page's", self.session_id, describe_error(exc))

    def _assets_came_late(self) -> None:
        """Assets arrived after the stream named their URLs: a checkout shows them."""
        if self._asset_checkout is None or self._asset_checkout.done():
            self._asset_checkout = self._spawn(self._checkout_for_assets(), "asset-checkout")

    async def _checkout_for_assets(self) -> None:
        await asyncio.sleep(_ASSETS_GATHER_S)  # the page's other late assets come too
        recorder = self._recorder
        if recorder is None or self._page is None or self._state not in (
                SessionState.STARTING, *_LIVE):
            return
        try:
            await asyncio.wait_for(recorder.checkout(), _ANSWER_S)
        except (TimeoutError, PlaywrightError, RRStreamError) as exc:
            self._log.info("session %s: no checkout for the assets that came late (%s); the "
                           "page's next one names them", self.session_id, describe_error(exc))

    def _asset_sink(self) -> AssetSink | None:
        sink = self._outbox.sink
        return sink if isinstance(sink, AssetSink) and self._stream_lost_at is None else None

    def _push_failed(self, exc: Exception) -> bool:
        """A push to the stream failed: without a supervisor (or while stopping) the session
        cannot stream any more; with one it waits for `attach_stream`."""
        reason = describe_error(unwrap(exc))
        if self._state not in (SessionState.STARTING, *_LIVE):
            self._error = self._error or f"stream lost: {reason}"
            self._log.error("session %s: stream lost while stopping: %s", self.session_id,
                            reason)
            return False
        if self._supervisor is None:
            self._fail(f"stream lost: {reason}")
            return False
        self._outbox.suspend()
        self._stream_lost_at = time.time()
        timeout = self._settings.stream_reattach_timeout_s
        message = (f"a push to the stream failed ({reason}); waiting up to {timeout:g} s for "
                   "it to be reopened")
        self._warn(WarningKind.STREAM_LOST, message)
        self._log.warning("session %s: %s", self.session_id, message)
        try:
            self._supervisor.stream_lost(self.session_id)
        except Exception as report_error:
            self._log.warning("session %s: telling the supervisor the stream was lost failed: "
                              "%s", self.session_id, describe_error(report_error))
        self._awaiting_stream = self._spawn(self._fail_unless_reattached(timeout), "await-stream")
        return True

    async def _fail_unless_reattached(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self._stream_lost_at is not None:
            self._fail(f"its stream was lost and not reopened within {seconds:g} s")

    # -- internals: shutdown ---------------------------------------------------------------

    async def _shutdown(self, final: SessionState) -> None:
        """Stop input, close the browser, drain batches, close the stream: within 5 s, by
        force where the polite way takes too long."""
        began = time.monotonic()
        if self._state is not SessionState.STOPPING:
            self._move(SessionState.STOPPING if final is SessionState.STOPPED else final)
        self._checkpoints.stop()  # a replacement would not resume an ending session
        self._workflow.interrupt()
        current = asyncio.current_task()
        pending = [t for t in (self._launching, *self._tasks)
                   if t is not None and t is not current and not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            _, stuck = await asyncio.wait(pending, timeout=1.0)
            if stuck:
                self._log.warning("session %s: %d tasks did not end when cancelled: %s",
                                  self.session_id, len(stuck),
                                  ", ".join(t.get_name() for t in stuck))
        try:
            await self._close_browser(began + _STOP_BROWSER_S)
            await self._drain(began + _STOP_WITHIN_S)
        finally:
            last = time_left(began + _STOP_ALL_S, 0.5)
            cleanup = []
            if self._demo_site is not None:
                cleanup.append(bounded(self._demo_site.stop(), last, "stopping the demo site",
                                       self._log))
            if self._dir is not None:
                # Ends whatever of this session's driver and Chromium still runs.
                cleanup.append(bounded(asyncio.to_thread(self._dir.remove), last,
                                       "removing the browser's temp directory", self._log))
            await asyncio.gather(*cleanup)
            if self._state is SessionState.STOPPING:
                self._move(final)
            self._ended_at = time.time()
            self._log.info("session %s %s in %.1f s", self.session_id, self._state,
                           time.monotonic() - began)
            self._stopped.set()

    async def _close_browser(self, deadline: float) -> None:
        page, recorder, log = self._page, self._recorder, self._log
        crashed = False
        # The final pagehide flush reaches the binding before the page goes away.
        if page is not None and recorder is not None and not page.is_closed():
            try:
                await asyncio.wait_for(recorder.flush(), _FLUSH_S)
            except TimeoutError:
                log.warning("session %s: the page did not answer within %.0f s (a script that "
                            "never yields, a dialog or a long snapshot); crashing its renderer "
                            "to stop it", self.session_id, _FLUSH_S)
                crashed = await recorder.crash_renderer()
            except (PlaywrightError, RRStreamError) as exc:
                log.info("session %s: no final flush: %s", self.session_id, describe_error(exc))
        if recorder is not None and not crashed:
            await bounded(recorder.detach(), time_left(deadline, 0.5), "detaching the recorder",
                          log)
        if self._guard is not None:
            await bounded(self._guard.close(), time_left(deadline, 0.5),
                          "stopping the page guard", log)
        await bounded(self._assets.close(), time_left(deadline, 0.5),
                      "ending the asset captures", log)
        if self._context is not None:
            await bounded(self._context.close(), time_left(deadline, 1.5),
                          "closing the browser context", log)
        if self._browser is not None:
            # A shared Chromium only loses this session's context and connection.
            await bounded(self._browser.close(), time_left(deadline, 1.0), "closing the browser",
                          log)
        if self._network_guard is not None:
            await bounded(self._network_guard.close(), time_left(deadline, 0.2),
                          "ending the network checks", log)
        if self._egress is not None:
            await bounded(self._egress.close(), time_left(deadline, 0.2),
                          "closing the egress proxy", log)
        if self._playwright is not None:
            await bounded(self._playwright.stop(), time_left(deadline, 1.0),
                          "stopping Playwright", log)

    async def _drain(self, deadline: float) -> None:
        if not await self._outbox.drain(time_left(deadline, 5.0)):
            self._log.error("session %s: %d batches not handed on before the stop's deadline",
                            self.session_id, self._outbox.queued)
        sink = self._outbox.sink
        if sink is not None and self._stream_lost_at is None:
            await bounded(sink.close(), time_left(deadline + 0.3, 0.3), "closing the stream",
                          self._log)


class _PageSteps:
    """Runs the session's steps on its current page (the Workflow's StepRunner)."""

    def __init__(self, session: BrowserSession) -> None:
        self._session = session

    async def run(self, step: Step) -> None:
        session = self._session
        page = session._page
        if page is None:
            raise RRStreamError("the page is being reopened")
        try:
            await run_step(page, step)
        except NavigationFailed as exc:
            explained = session._explained(exc)
            await session._navigation_failed(explained)
            if explained is exc:
                raise
            raise explained from exc.__cause__

    async def interrupted(self, exc: Exception) -> bool:
        if not page_gone(exc):
            return False
        # The page's crash event cancels this task (and reruns the step) if it comes.
        await asyncio.sleep(_CRASH_NOTICE_S)
        return False


__all__ = ["BatchSink", "BrowserSession", "SharedBrowser", "Supervisor"]
