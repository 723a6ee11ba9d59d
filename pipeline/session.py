"""BrowserSession: one browser context, one recorded page, one workflow, and what keeps
them going.

Runs as the Ray actor `session:<id>` holding a `browser` slot. The class is plain Python;
its only links to other actors are a `BatchSink`, a `SharedBrowser` and a `Supervisor`,
so it runs without Ray too. It is the coordinator: it owns the session's state, its
status and its tasks, starts and stops the parts below in order, and wires them to each
other; each part does one job:
- pipeline/session_browser.py: the Chromium connection (its own, or its node's shared
  one), the context and the page, opened, reopened and closed;
- pipeline/page_watch.py: what the page does that the status and warnings report, and
  the URL it is at;
- pipeline/batch_meter.py: what each push handed on, against the event limits;
- pipeline/workflow_driver.py: the steps run on the page, and the REST API's pause,
  resume and added steps;
- pipeline/crash_recovery.py: a crashed page or browser reopened, within the budget;
- pipeline/stream_link.py: the outbox to the stream, a lost stream waited for or failed,
  the final drain.

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
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from playwright.async_api import Error as PlaywrightError

from pipeline.asset_capture import AssetCapture
from pipeline.asset_urls import AssetUrls
from pipeline.batch_meter import BatchMeter
from pipeline.canvas_meter import CanvasMeter
from pipeline.checkpoints import CheckpointReporter
from pipeline.config import Settings
from pipeline.control import ControlLog
from pipeline.crash_recovery import CrashRecovery
from pipeline.crashes import CrashBudget, CrashKind
from pipeline.error_events import ErrorEvents
from pipeline.errors import (
    InvalidTransition,
    NavigationFailed,
    RRStreamError,
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
)
from pipeline.network_guard import NetworkGuard
from pipeline.network_policy import AddressPolicy, settings_policy
from pipeline.outbox import BatchSink
from pipeline.page_limits import PageLimits
from pipeline.page_watch import PageWatch
from pipeline.protocol import InputEvent
from pipeline.session_browser import SessionBrowser, SharedBrowser
from pipeline.steps import Step
from pipeline.stream_link import StreamLink
from pipeline.takeover import SessionHooks, Takeover
from pipeline.teardown import bounded, time_left
from pipeline.warning_log import WarningLog
from pipeline.workflow import Workflow
from pipeline.workflow_driver import PageSteps, WorkflowDriver

if TYPE_CHECKING:
    from pipeline.demo_site import DemoSite

_log = logging.getLogger(__name__)
# stop() returns within 5 s whatever the page does: the browser part gets this much, the
# final hand-over of batches the rest.
_STOP_BROWSER_S = 3.0
_STOP_WITHIN_S = 4.0
_STOP_ALL_S = 4.8
_ANSWER_S = 2.0  # a page asked to take a checkout now
_LIVE = (SessionState.RUNNING, SessionState.PAUSED, SessionState.IDLE)
# Assets captured after the stream named their URLs are shown by a checkout this long
# after the first of them: one checkout for a page's late images and fonts, two a second
# at most.
_ASSETS_GATHER_S = 0.5


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
        self._spec = SessionSpec(demo=True)  # replaced by start()
        self._settings = settings
        self._state = SessionState.PENDING
        self._start_url: str | None = None
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._error: str | None = None
        self._demo_site: DemoSite | None = None
        self._stopped = asyncio.Event()
        # Tasks: every background task is kept here until done.
        self._tasks: set[asyncio.Task[Any]] = set()
        self._launching: asyncio.Task[None] | None = None
        self._asset_checkout: asyncio.Task[None] | None = None
        # What the page did, bounded and counted.
        self._warnings = WarningLog()
        self._errors = ErrorEvents(lambda: self._stream.outbox.receiver)
        self._limits = PageLimits(settings.max_events_per_s, len(sampling_levels(settings)),
                                  self._warnings,
                                  max_event_bytes_per_s=settings.max_event_bytes_per_s)
        self._canvas = CanvasMeter()
        self._meter = BatchMeter(self._limits, self._canvas, self._warnings,
                                 recorder=lambda: self._browser.recorder,
                                 url=self._page_url, live=self._live, spawn=self._spawn)
        # What its browser loaded is served to viewers from the node's asset cache, and
        # named in the stream instead of its URL (pipeline/asset_capture.py).
        self._asset_urls = AssetUrls()
        self._assets = AssetCapture(self._asset_urls, lambda: self._stream.asset_sink(),
                                    self._log, self._assets_came_late)
        self._recovery = CrashRecovery(
            session_id, CrashBudget(settings.max_browser_crashes, settings.crash_window_s),
            self._warnings, self._log, metrics, live=self._live, spawn=self._spawn,
            interrupt=self._interrupt, reopen=self._reopen, reopened=self._reopened,
            fail=self._fail, url=lambda: self._watch.last_url)
        # The browser, and what watches its page.
        policy = policy or settings_policy(settings)
        self._browser = SessionBrowser(
            session_id, settings, self._log, host=host,
            network_guard=(NetworkGuard(policy, lambda refusal: self._watch.blocked(refusal))
                           if policy is not None else None),
            assets=self._assets, receiver=lambda: self._stream.outbox.receiver,
            on_notice=self._limits.notice, on_still_over=self._meter.still_over,
            on_crash=self._recovery.crashed, on_page=lambda page: self._watch.attach(page))
        self._watch = PageWatch(session_id, settings.snapshot_timeout_s, self._browser,
                                self._warnings, self._errors, self._log, spawn=self._spawn,
                                url_changed=lambda: self._checkpoints.changed(self._workflow))
        self._stream = StreamLink(
            session_id, sink, settings.stream_reattach_timeout_s, self._browser,
            self._warnings, self._log,
            report_lost=(lambda: supervisor.stream_lost(session_id)) if supervisor else None,
            streaming=self._streaming, fail=self._fail, lost_late=self._stream_lost_late,
            spawn=self._spawn, on_receiver=self._browser.use_receiver,
            on_sent=self._meter.handed_on,
            prepare=self._asset_urls.rewrite if settings.asset_cache_bytes > 0 else None)
        # The workflow, and who is told where it is.
        self._control = ControlLog()  # pauses, resumes and added steps: who, when
        self._checkpoints = CheckpointReporter(
            session_id, (lambda cp: supervisor.report(session_id, cp)) if supervisor else None,
            lambda: self._watch.last_url, self._control)
        self._driver = WorkflowDriver(
            session_id, settings.step_delay_ms / 1000.0, self._checkpoints, self._control,
            PageSteps(self._browser, self._watch.navigation_failed), self._errors, self._log,
            state=lambda: self._state, move=self._move, spawn=self._spawn,
            receiver=lambda: self._stream.outbox.receiver,
            recovering=lambda: self._recovery.recovering,
            on_done=self._workflow_finished, on_error=self._step_failed,
            allows=lambda action, state: self._takeover.allows(action, state))
        # A person in control from a viewer (pipeline/takeover.py).
        self._takeover = Takeover(session_id, SessionHooks(
            lambda: self._state, self._driver.change, lambda: self._browser.page,
            self._spawn), self._log)

    def set_sink(self, sink: BatchSink) -> None:
        if self._state is not SessionState.PENDING:
            raise InvalidTransition(f"session {self.session_id}", self._state, "connect")
        self._stream.outbox.sink = sink

    def use_host(self, host: SharedBrowser) -> None:
        """Opens the session in `host`'s shared Chromium instead of launching one."""
        if self._state is not SessionState.PENDING or self._browser.connected:
            raise InvalidTransition(f"session {self.session_id}", self._state, "change browser")
        self._browser.host = host

    def set_supervisor(self, supervisor: Supervisor) -> None:
        if self._state is not SessionState.PENDING:
            raise InvalidTransition(f"session {self.session_id}", self._state, "supervise")
        self._stream.report_lost = lambda: supervisor.stream_lost(self.session_id)
        self._checkpoints.send = lambda cp: supervisor.report(self.session_id, cp)

    # -- lifecycle -------------------------------------------------------------------------

    async def warm_up(self) -> None:
        """Starts Playwright and Chromium now, so `start` only opens a page."""
        if self._state is not SessionState.PENDING:
            raise InvalidTransition(f"session {self.session_id}", self._state, "warm up")
        if not self._browser.connected:
            await self._browser.connect()

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
        if self._stream.outbox.sink is None:
            raise InvalidTransition(f"session {self.session_id}", self._state, "start unconnected")
        self._spec = spec
        self._driver.replace(list(spec.steps))
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
        self._log.info("session %s %s at %s%s", self.session_id, self._state,
                       self._watch.last_url,
                       f", resuming at step {resume.step}" if resume is not None else "")
        self._checkpoints.changed(self._workflow, force=True)
        self._driver.run()
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
        # Before start() the page's first snapshot begins the stream.
        self._stream.reopened(sink, started=self._state is not SessionState.PENDING)

    def status(self) -> SessionStatus:
        page, watch, limits = self._browser.page, self._watch, self._limits
        url = page.url if page is not None and not page.is_closed() else None
        if url is None or not url.startswith(("http:", "https:")):
            url = watch.last_url or url
        guard = self._browser.network_guard
        return SessionStatus(
            state=self._state,
            url=url,
            started_at=self._started_at,
            ended_at=self._ended_at,
            steps=[s.model_copy() for s in self._workflow.statuses],
            error=self._error,
            browser_restarts=self._recovery.restarts,
            start_url=self._start_url,
            navigation_error=watch.navigation_error,
            recording_error=watch.recording_error,
            browser_crashes=self._recovery.budget.counts[CrashKind.BROWSER],
            page_crashes=self._recovery.budget.counts[CrashKind.PAGE],
            stream_lost_at=self._stream.lost_at,
            blocked_requests=guard.blocked if guard is not None else 0,
            warnings=self._warnings.list(),
            unresponsive_since=watch.unresponsive_since,
            dialogs_dismissed=limits.dialogs,
            popups_closed=limits.popups,
            sampling_level=limits.sampling_level,
            stretches_dropped=limits.stretches_dropped,
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
        self._driver.change(ControlAction.PAUSE, by)
        return self.status()

    async def resume(self, by: str) -> SessionStatus:
        """The workflow runs on from its next step (the session is idle at once if it has
        none left). Raises ControlRefused unless the session is paused."""
        self._driver.change(ControlAction.RESUME, by)
        return self.status()

    async def add_steps(self, steps: list[Step], by: str) -> SessionStatus:
        """`steps` run after the others: at once if the session is idle (it runs again),
        after `resume` if it is paused. Raises ControlRefused in any other state, or past
        MAX_STEPS in all."""
        self._driver.change(ControlAction.STEPS, by, steps)
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

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    async def wait_stopped(self) -> SessionStatus:
        await self._stopped.wait()
        return self.status()

    # -- internals: states and tasks -------------------------------------------------------

    @property
    def _workflow(self) -> Workflow:
        return self._driver.workflow

    def _move(self, state: SessionState) -> None:
        if state not in SESSION_TRANSITIONS[self._state]:
            raise InvalidTransition(f"session {self.session_id}", self._state, state)
        self._state = state

    def _live(self) -> bool:
        return self._state in _LIVE

    def _streaming(self) -> bool:
        return self._state is SessionState.STARTING or self._state in _LIVE

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _fail(self, reason: str) -> None:
        """Ends the session as failed, from a callback or a task of its own."""
        if not self._streaming():
            return
        self._error = reason
        self._errors.add("session", f"the session failed: {reason}")
        self._log.error("session %s failed: %s", self.session_id, reason)
        self._spawn(self._shutdown(SessionState.FAILED), "fail")

    def _step_failed(self, error: str) -> None:
        self._error = error

    def _stream_lost_late(self, error: str) -> None:
        self._error = self._error or error

    def _workflow_finished(self) -> None:
        self._move(SessionState.IDLE)
        self._log.info("session %s workflow finished", self.session_id)
        if self._spec.close_when_done:
            self._spawn(self.stop(), "stop")

    async def _stop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._log.info("session %s reached its time limit", self.session_id)
        await self.stop()

    # -- internals: opening and reopening the page -----------------------------------------

    async def _launch(self, resume: Checkpoint | None) -> None:
        if self._spec.demo:
            await self._start_demo_site()
        if resume is not None:
            self._driver.restore(resume)
        self._stream.outbox.start()
        await self._browser.open_context(self._spec)
        await self._browser.open_page()
        url = self._resume_url(resume) or self._start_url
        assert url is not None
        await self._open(url)

    async def _start_demo_site(self) -> None:
        from pipeline.demo_site import DemoSite
        from pipeline.demo_workflow import demo_steps

        self._demo_site = DemoSite()
        await self._demo_site.start()
        guard = self._browser.network_guard
        if guard is not None:  # it is on loopback, and it is ours
            guard.policy.allow_origin(self._demo_site.url)
            guard.policy.allow_origin(self._demo_site.widget_url)
        self._start_url = self._demo_site.url + "/"
        self._driver.replace(demo_steps(self._demo_site.url))

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

    async def _open(self, url: str) -> None:
        """Opens `url`; a page that does not open is reported, not raised."""
        self._watch.last_url = url
        try:
            await self._browser.open(url)
        except NavigationFailed as exc:
            await self._watch.navigation_failed(self._browser.explained(exc))

    def _page_url(self) -> str | None:
        page = self._browser.page
        return page.url if page is not None else None

    # The crash recovery's hands (pipeline/crash_recovery.py).

    def _interrupt(self, kind: CrashKind) -> None:
        self._driver.cancel()
        self._watch.stop()
        if kind is CrashKind.BROWSER:
            self._browser.forget_browser()

    async def _reopen(self, kind: CrashKind) -> None:
        await self._browser.reopen(kind, self._spec)
        await self._open(self._watch.last_url or self._start_url or "about:blank")

    def _reopened(self) -> None:
        self._checkpoints.changed(self._workflow, force=True)
        self._driver.run()

    # -- internals: assets that came late ---------------------------------------------------

    def _assets_came_late(self) -> None:
        """Assets arrived after the stream named their URLs: a checkout shows them."""
        if self._asset_checkout is None or self._asset_checkout.done():
            self._asset_checkout = self._spawn(self._checkout_for_assets(), "asset-checkout")

    async def _checkout_for_assets(self) -> None:
        await asyncio.sleep(_ASSETS_GATHER_S)  # the page's other late assets come too
        recorder = self._browser.recorder
        if recorder is None or self._browser.page is None or not self._streaming():
            return
        try:
            await asyncio.wait_for(recorder.checkout(), _ANSWER_S)
        except (TimeoutError, PlaywrightError, RRStreamError) as exc:
            self._log.info("session %s: no checkout for the assets that came late (%s); the "
                           "page's next one names them", self.session_id, describe_error(exc))

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
            await self._browser.close(began + _STOP_BROWSER_S)
            await self._stream.drain(began + _STOP_WITHIN_S)
        finally:
            last = time_left(began + _STOP_ALL_S, 0.5)
            cleanup = [self._browser.remove_dir(last)]
            if self._demo_site is not None:
                cleanup.append(bounded(self._demo_site.stop(), last, "stopping the demo site",
                                       self._log))
            await asyncio.gather(*cleanup)
            if self._state is SessionState.STOPPING:
                self._move(final)
            self._ended_at = time.time()
            self._log.info("session %s %s in %.1f s", self.session_id, self._state,
                           time.monotonic() - began)
            self._stopped.set()


__all__ = ["BatchSink", "BrowserSession", "SharedBrowser", "Supervisor"]
