"""Shapes that cross module and process boundaries: session specs, states, status."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    computed_field,
    model_validator,
)

from pipeline.steps import MAX_STEPS, Step


class SessionState(enum.StrEnum):
    PENDING = "pending"  # accepted, waiting for a browser slot
    STARTING = "starting"  # launching Chromium, opening the first page
    RUNNING = "running"  # running its workflow
    PAUSED = "paused"  # its workflow is held between two steps; the page stays live
    IDLE = "idle"  # workflow done; the page stays live until stopped
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def ended(self) -> bool:
        return self in (SessionState.STOPPED, SessionState.FAILED)


# Legal moves of a session's state machine; anything else is a bug.
SESSION_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.PENDING: frozenset({SessionState.STARTING, SessionState.STOPPING,
                                     SessionState.FAILED}),
    # Straight to paused: a session restarted (a new actor) while it was paused.
    SessionState.STARTING: frozenset({SessionState.RUNNING, SessionState.PAUSED,
                                      SessionState.STOPPING, SessionState.FAILED}),
    SessionState.RUNNING: frozenset({SessionState.IDLE, SessionState.PAUSED,
                                     SessionState.STOPPING, SessionState.FAILED}),
    SessionState.PAUSED: frozenset({SessionState.RUNNING, SessionState.STOPPING,
                                    SessionState.FAILED}),
    # Back to running: steps were added to a session whose workflow was done.
    SessionState.IDLE: frozenset({SessionState.RUNNING, SessionState.STOPPING,
                                  SessionState.FAILED}),
    SessionState.STOPPING: frozenset({SessionState.STOPPED, SessionState.FAILED}),
    SessionState.STOPPED: frozenset(),
    SessionState.FAILED: frozenset(),
}


class Viewport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    width: StrictInt = Field(default=1280, ge=200, le=3840)
    height: StrictInt = Field(default=800, ge=200, le=2160)


# What a CSS selector list may be made of. The page's engine is the judge of the rest: the
# recorder records nothing if it rejects one (frontend/src/recorder.js), since rrweb would
# then record what the selector was meant to hide.
_SELECTOR_CHARS = re.compile(r"[\w\s#.,>+~*=|^$:()\[\]\"'@%/\\-]+")
_PAIRS = {")": "(", "]": "["}


def _css_selector(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("a selector must not be empty")
    if not _SELECTOR_CHARS.fullmatch(text):
        raise ValueError("a CSS selector holds only letters, digits, spaces and "
                         "#.,>+~*=|^$:()[]\"'@%/\\-")
    depth: list[str] = []
    quote: str | None = None
    for char in text:
        if quote is not None:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([":
            depth.append(char)
        elif char in _PAIRS and (not depth or depth.pop() != _PAIRS[char]):
            raise ValueError(f"unbalanced {char!r} in the selector")
    if depth or quote is not None:
        raise ValueError("an unclosed bracket or quote in the selector")
    return text


CssSelector = Annotated[str, Field(min_length=1, max_length=1_000),
                        AfterValidator(_css_selector)]


class SessionSpec(BaseModel):
    """What `POST /sessions` takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: AnyHttpUrl | None = Field(
        default=None, description="http(s) URL the session opens first (not with `demo`)."
    )
    steps: list[Step] = Field(default_factory=list, max_length=MAX_STEPS,
                              description="Workflow steps, run in order after the first load "
                              f"(at most {MAX_STEPS}, with those added later).")
    name: str | None = Field(default=None, max_length=200)
    viewport: Viewport = Field(default_factory=Viewport)
    close_when_done: StrictBool = Field(
        default=False,
        description="Stop the session when its workflow ends instead of keeping the page live.",
    )
    max_duration_s: StrictInt = Field(default=3_600, ge=1, le=86_400,
                                description="The session stops itself after this long.")
    demo: StrictBool = Field(
        default=False,
        description="Run the built-in demo workflow on the bundled demo site; `url` and `steps` "
        "must then be left out.",
    )
    idle_timeout_s: StrictInt | None = Field(
        default=None, ge=0, le=86_400,
        description="Stop the session after this long with no viewer and no running step "
        "(default: RRSTREAM_IDLE_TIMEOUT_S; 0: never).",
    )

    mask_all_inputs: StrictBool = Field(
        default=False, description="Record every input's value as asterisks (passwords are "
        "masked always, RRSTREAM_MASK_PASSWORDS).")
    mask_text_selector: CssSelector | None = Field(
        default=None, description="CSS selector of elements whose text is recorded as "
        "asterisks (rrweb's maskTextSelector).")
    block_selector: CssSelector | None = Field(
        default=None, description="CSS selector of elements left out of the recording: "
        "viewers see an empty box of their size (rrweb's blockSelector).")
    record: StrictBool = Field(
        default=True, description="Store the session's recording. False: it streams to "
        "live viewers and nothing of it is written to storage.")

    @model_validator(mode="after")
    def _url_or_demo(self) -> SessionSpec:
        if self.demo and (self.url is not None or self.steps):
            raise ValueError("a demo session takes no url or steps")
        if not self.demo and self.url is None:
            raise ValueError("url is required")
        return self


class StepState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class StepStatus(BaseModel):
    index: int
    action: str
    state: StepState = StepState.PENDING
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    attempts: int = Field(default=0, description="Times the step started. More than one when "
                          "its page crashed or its session's actor died while it ran: it then "
                          "runs again from its start.")


class DrivenBy(enum.StrEnum):
    """What drives a session's page."""

    STEPS = "steps"  # its workflow: the steps it was given and those added to it
    DRIVER = "driver"  # a program, over the driver protocol (issue 13, not yet)
    PERSON = "person"  # a person in the viewer, with a control link (pipeline/takeover.py)


class ControlAction(enum.StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    STEPS = "steps"  # steps were added
    TAKE = "take"  # a person took control from a viewer (`by`: the control link's label)
    HAND_BACK = "hand_back"  # ... and gave it back (or it went back by itself: `reason`)


class ControlChange(BaseModel):
    """One change of who or what drives a session, or how: in its status, and in its
    recording as an rrweb custom event (`rrstream.control`)."""

    action: ControlAction
    by: str = Field(description="Who asked: `key:<id>` for an API key (its digest's first "
                    "12 hex digits), `api` for a caller without one (auth off).")
    at: float = Field(description="Unix time, seconds.")
    steps: int | None = Field(default=None, description="How many steps were added "
                              "(`steps` only).")
    reason: str | None = Field(default=None, description="`hand_back` only: why control "
                               "went back, when the person did not hand it back themselves "
                               "(`expired`, `closed`, `lease`).")


class StepsRequest(BaseModel):
    """What `POST /sessions/{id}/steps` takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS, description="Steps to "
                              "run after the session's others, as `POST /sessions` takes "
                              f"them; a session has at most {MAX_STEPS} in all.")


class WarningKind(enum.StrEnum):
    """What a session recovered from, or let the page do without failing."""

    NAVIGATION = "navigation"  # a page did not open: unreachable, timed out, HTTP error
    DOWNLOAD = "download"  # the page started a download; it was cancelled
    RECORDING = "recording"  # no rrweb snapshot after a page load, or it came back
    BROWSER_CRASH = "browser_crash"  # the Chromium the session uses died
    PAGE_CRASH = "page_crash"  # the session's renderer died
    STREAM_LOST = "stream_lost"  # a push to the stream failed, or the stream came back
    BLOCKED_REQUEST = "blocked_request"  # the network policy refused an address
    DIALOG = "dialog"  # the page opened alert/confirm/prompt/print/beforeunload: dismissed
    POPUP = "popup"  # the page tried to open a window (window.open, target=_blank): closed
    EVENT_RATE = "event_rate"  # too many events or event bytes a second: coarser, or paused
    UNRESPONSIVE = "unresponsive"  # the page's main thread stopped answering, or answers again
    LARGE_BATCH = "large_batch"  # one batch of many MB (a huge DOM's snapshot): sent in pieces


class SessionWarning(BaseModel):
    """One recoverable event in a session's life, in words."""

    at: float = Field(description="When it last happened.")
    kind: WarningKind
    message: str
    url: str | None = None
    count: int = Field(default=1, description="How often it happened: repeats (a dialog "
                       "loop, a popup storm) are counted in one warning, not listed.")


class Checkpoint(BaseModel):
    """Where a session's workflow is, as its actor reports it to the registry whenever it
    changes, so that a replacement actor (after the first one died) continues from there."""

    url: str | None = Field(default=None, description="The main frame's last URL.")
    step: int = Field(default=0, description="Index of the step running or next; "
                      "len(steps) once the workflow is done.")
    steps: list[StepStatus] = Field(default_factory=list)
    version: int = Field(default=0, description="Grows with every report; the registry "
                         "keeps the highest it got.")
    added: list[Step] = Field(default_factory=list, description="Steps added to the "
                              "session (`POST /sessions/{id}/steps`), after its spec's.")
    paused: bool = Field(default=False, description="Its workflow is paused.")
    control: list[ControlChange] = Field(default_factory=list)
    control_dropped: int = 0


class SessionStatus(BaseModel):
    """What the browser actor knows about itself."""

    state: SessionState
    url: str | None = None
    title: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    steps: list[StepStatus] = Field(default_factory=list)
    error: str | None = None
    browser_restarts: int = Field(default=0, description="Times the page was reopened after "
                                  "a crash: browser_crashes + page_crashes while under budget.")
    start_url: str | None = None
    navigation_error: str | None = Field(
        default=None, description="Why the page last asked for did not open (Chromium shows "
        "its error page, or the server's error answer); None once a page opens.")
    recording_error: str | None = Field(
        default=None, description="Why the current page is not recorded (no rrweb snapshot "
        "within RRSTREAM_SNAPSHOT_TIMEOUT_S of its load, after retries); None when it is.")
    browser_crashes: int = Field(default=0, description="Crashes of the session's Chromium.")
    page_crashes: int = Field(default=0, description="Crashes of the session's renderer.")
    stream_lost_at: float | None = Field(
        default=None, description="Since when the session waits for its stream to be "
        "reopened (a push to it failed); None while it streams.")
    blocked_requests: int = Field(
        default=0, description="Requests the network policy refused "
        "(RRSTREAM_BLOCK_PRIVATE_NETWORKS); each distinct refusal is also a warning.")
    warnings: list[SessionWarning] = Field(
        default_factory=list, description="What the session recovered from, oldest first "
        "(the last 50).")
    unresponsive_since: float | None = Field(
        default=None, description="Since when the page's main thread has not answered (a "
        "script that never yields, a snapshot of a huge DOM); None while it answers.")
    dialogs_dismissed: int = Field(default=0, description="Dialogs the page opened, each "
                                   "dismissed at once.")
    popups_closed: int = Field(default=0, description="Windows the page tried to open, each "
                               "refused or closed at once.")
    sampling_level: int = Field(
        default=0, description="0: recorded in full; 1 or more: with coarser sampling, as the "
        "page emitted over RRSTREAM_MAX_EVENTS_PER_S.")
    stretches_dropped: int = Field(
        default=0, description="Times recording paused for a moment because the page "
        "emitted too fast even so, or too many bytes (RRSTREAM_MAX_EVENT_BYTES_PER_S); each "
        "pause ends with a new checkout.")
    canvas_bytes: int = Field(
        default=0, description="Bytes of canvas pictures the page sent (RRSTREAM_CANVAS_FPS), "
        "before compression.")
    canvas_bytes_per_s: float = Field(
        default=0.0, description="The same, a second, over the last 10 s.")
    assets_captured: int = Field(
        default=0, description="Stylesheets, fonts and images (and stylesheet copies) its "
        "browser loaded that it handed to its node's asset cache, for the stream to name as "
        "`/assets/<sha256>`.")
    driven_by: DrivenBy = Field(default=DrivenBy.STEPS, description="What drives the "
                                "page: `steps` (its workflow), `person` (a viewer with a "
                                "control link took control); `driver` (a program) is to come.")
    controller: str | None = Field(default=None, description="While a person is in control: "
                                   "their control link's label.")
    control: list[ControlChange] = Field(
        default_factory=list, description="Pauses, resumes, added steps, takes and hand-backs, "
        "oldest first (the last 100).")
    control_dropped: int = Field(default=0, description="Older control changes, no longer "
                                 "listed.")


class StreamStats(BaseModel):
    """What the streamer actor knows about the stream."""

    batches: int = 0
    events: int = 0
    bytes_raw: int = 0
    bytes_compressed: int = 0
    last_seq: int = 0
    segments_buffered: int = 0
    bytes_buffered: int = 0
    viewers: int = 0
    events_per_s: float = 0.0
    ended: bool = False


class RecordingInfo(BaseModel):
    """A stored recording's metadata: `<store>/<id>/info.json` beside its chunks
    (pipeline/recording_store.py)."""

    id: str = Field(description="The recorded session's id.")
    codec: str = Field(description="Codec of the frames' payloads, as in `welcome`.")
    created_at: float
    ended_at: float | None = Field(default=None, description="None while still recording.")
    name: str | None = Field(default=None, description="The session's name.")
    batches: int = 0
    events: int = 0
    bytes_compressed: int = 0
    chunks: int = Field(default=0, description="Stored chunks (one per segment, or 4 MiB).")
    first_seq: int | None = None
    last_seq: int | None = None
    first_ts: float | None = Field(default=None, description="The first event's page time "
                                   "(ms since the epoch).")
    last_ts: float | None = Field(default=None, description="The newest stored event's page "
                                  "time (ms since the epoch).")
    urls: list[str] = Field(default_factory=list, description="The pages the session "
                            "visited, in order, each once.")
    page_count: int = Field(default=0, description="Page loads: each checkout on another URL "
                            "than the one before.")
    errors: int = Field(default=0, description="Errors recorded: failed steps, a failed "
                        "session, errors the page logged.")
    error: str | None = Field(default=None, description="The first of them, in words.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_ms(self) -> float:
        """From the first event to the newest stored one."""
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return max(0.0, self.last_ts - self.first_ts)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def has_errors(self) -> bool:
        return self.errors > 0


class RecordingPage(BaseModel):
    """One page of `GET /recordings`, newest first."""

    items: list[RecordingInfo]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null "
                                    "on the last.")


class NodeSlots(BaseModel):
    """One Ray node of the browser pool."""

    node_id: str
    address: str
    alive: bool
    slots_total: int
    slots_used: int
    warm: int = Field(default=0, description="Slots held by warm browsers waiting for a session.")
    sessions: list[str]
    streamer: str = Field(default="not created", description="The node's streamer actor: "
                          "alive, restarting, dead or not created.")
    browser: str = Field(default="not created", description="The node's shared browser host "
                         "actor: alive, restarting, dead or not created.")


class PoolStatus(BaseModel):
    """What `GET /pool` and `rrstream status` show."""

    nodes: list[NodeSlots]
    slots_total: int
    slots_used: int
    queue: list[str] = Field(description="Pending session ids, first in line first.")
    when_full: str


class ViewerLinkRequest(BaseModel):
    """What `POST /sessions/{id}/viewer-links` (and `/recordings/{id}/viewer-links`) take."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["view", "control"] = Field(
        default="view", description="`view` watches; `control` watches and may take "
        "control of the page from the viewer (protocol 1.1, its label shown as who is in "
        "control).")
    ttl_s: StrictInt = Field(default=3_600, ge=1, description="Seconds the link works; for a "
                       "session at most its max duration plus the ended-session retention.")
    label: str | None = Field(default=None, max_length=200,
                              description="Who the link is for, as you name them.")


class ViewerLink(BaseModel):
    """A link that opens one session's (or recording's) stream in the viewer; its token
    rides in the URL's #fragment, which browsers never send to a server."""

    url: str
    token: str
    role: Literal["view", "control"]
    label: str | None
    expires_at: float = Field(description="Unix time, seconds.")


class SessionInfo(BaseModel):
    """What `GET /sessions/{id}` answers."""

    id: str
    name: str | None
    state: SessionState
    start_url: str | None
    url: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    node_id: str | None
    queue_position: int | None = Field(
        default=None, description="1 for the next session to get a browser slot; None if placed."
    )
    restarts: int = 0
    events: int
    batches: int
    bytes_raw: int
    bytes_compressed: int
    viewers: int
    steps: list[StepStatus]
    error: str | None
    viewer_url: str
    stream_url: str
    # From the session actor's SessionStatus (see there).
    navigation_error: str | None = None
    recording_error: str | None = None
    browser_crashes: int = 0
    page_crashes: int = 0
    blocked_requests: int = 0
    warnings: list[SessionWarning] = Field(default_factory=list)
    view_link: ViewerLink | None = Field(
        default=None, description="On `POST /sessions` only: a `view` link for an hour.")
    unresponsive_since: float | None = None
    dialogs_dismissed: int = 0
    popups_closed: int = 0
    sampling_level: int = 0
    stretches_dropped: int = 0
    canvas_bytes: int = 0
    canvas_bytes_per_s: float = 0.0
    assets_captured: int = 0
    record: bool = Field(default=True, description="False: nothing of the session is stored.")
    driven_by: DrivenBy = DrivenBy.STEPS
    controller: str | None = None
    control: list[ControlChange] = Field(default_factory=list)
    control_dropped: int = 0


@dataclass(slots=True)
class SessionRecord:
    """The registry's entry for one session; persisted, so a restarted registry has it."""

    id: str
    spec: SessionSpec
    state: SessionState
    created_at: float
    node_id: str | None = None
    ended_at: float | None = None
    error: str | None = None
    queue_position: int | None = None
    restarts: int = 0  # the session actor was replaced: its node was lost, or it died
    epoch: int = -1  # its stream's epoch (pipeline/stream.py), +1 per new stream; -1: none
    actor_name: str | None = None  # the session actor's name while it has one
    checkpoint: Checkpoint | None = None
    link_generation: int = 0  # viewer tokens minted before the last revocation are refused


__all__ = [
    "SESSION_TRANSITIONS",
    "Checkpoint",
    "ControlAction",
    "ControlChange",
    "DrivenBy",
    "NodeSlots",
    "PoolStatus",
    "RecordingInfo",
    "RecordingPage",
    "SessionInfo",
    "SessionRecord",
    "SessionSpec",
    "SessionState",
    "SessionStatus",
    "SessionWarning",
    "ViewerLink",
    "ViewerLinkRequest",
    "StepState",
    "StepStatus",
    "StepsRequest",
    "StreamStats",
    "Viewport",
    "WarningKind",
]
