"""CheckpointReporter: tells a session's supervisor where its workflow is, once per change.

The supervisor (the registry) keeps the newest Checkpoint of every session, so that if
the session's actor dies a new one continues from there (BrowserSession.start's
`resume`). A report goes out on the loop turn after a change, so a burst (a step ending
and the next one starting, a redirect) is one report, and nothing is sent when nothing
that a resume needs changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pipeline.control import ControlLog
from pipeline.errors import describe_error
from pipeline.models import Checkpoint
from pipeline.workflow import Workflow

_log = logging.getLogger(__name__)


class CheckpointReporter:
    """`send(checkpoint)` is the supervisor's fire-and-forget report; `url()` the page's
    URL to resume at; `control` the session's control log, which the report carries."""

    def __init__(self, session_id: str, send: Callable[[Checkpoint], None] | None,
                 url: Callable[[], str | None], control: ControlLog | None = None) -> None:
        self.session_id = session_id
        self.send = send
        self.version = 0  # a resumed session goes on from its Checkpoint's
        self._url = url
        self._control = control or ControlLog()
        self._pending = False
        self._sent: tuple[object, ...] | None = None

    def changed(self, workflow: Workflow, force: bool = False) -> None:
        """Reports on the next loop turn; `force`: even if nothing a resume needs changed
        (the page was reopened after a crash)."""
        if self.send is None:
            return
        if force:
            self._sent = None
        if not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_soon(self._report, workflow)

    def now(self, workflow: Workflow) -> None:
        """Reports at once: a control change reaches the supervisor before the call that
        made it answers, so a replacement actor cannot miss it."""
        self._report(workflow)

    def stop(self) -> None:
        """No more reports (the session ended)."""
        self.send = None

    def _report(self, workflow: Workflow) -> None:
        self._pending = False
        send, url = self.send, self._url()
        if send is None:
            return
        control = self._control
        key = (url, workflow.position, tuple((s.state, s.attempts) for s in workflow.statuses),
               workflow.paused, control.total)
        if key == self._sent:
            return
        self._sent = key
        self.version += 1
        checkpoint = workflow.checkpoint(url, self.version)
        checkpoint.control, checkpoint.control_dropped = control.list(), control.dropped
        try:
            send(checkpoint)
        except Exception as exc:
            _log.warning("session %s: reporting its checkpoint failed: %s", self.session_id,
                         describe_error(exc),
                         extra={"session_id": self.session_id})


__all__ = ["CheckpointReporter"]
