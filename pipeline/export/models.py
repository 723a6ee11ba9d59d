"""The shapes of an export: what `POST /recordings/{id}/exports` takes, a job's state
machine and what the API shows of it, and what an export task reports while it runs."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

ExportFormat = Literal["webm", "png"]
MAX_WIDTH, MAX_HEIGHT, MAX_FPS = 3840, 2160, 30


class ExportRequest(BaseModel):
    """What `POST /recordings/{id}/exports` takes. A video covers `start_ms`..`end_ms` of
    the recording (offsets from its first event; the whole recording by default); a PNG is
    the one frame at `at_ms`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: ExportFormat = Field(default="webm", description="`webm` (VP8 video) or `png` "
                                 "(one frame).")
    start_ms: StrictInt | None = Field(default=None, ge=0, description="webm: where the video "
                                       "starts, in ms after the recording's first event "
                                       "(default 0).")
    end_ms: StrictInt | None = Field(default=None, ge=1, description="webm: where it ends "
                                     "(default: the recording's last event; later is "
                                     "clamped to it).")
    at_ms: StrictInt | None = Field(default=None, ge=0, description="png: the moment shown, in "
                                    "ms after the recording's first event (default 0).")
    width: StrictInt = Field(default=1280, ge=64, le=MAX_WIDTH,
                             description="Pixels; the page is fitted into it, centred.")
    height: StrictInt = Field(default=800, ge=64, le=MAX_HEIGHT, description="Pixels.")
    fps: StrictInt | None = Field(default=None, ge=1, le=MAX_FPS,
                                  description="webm: frames per second (default 10).")

    @model_validator(mode="after")
    def _fits_its_format(self) -> ExportRequest:
        if self.format == "png":
            given = [n for n in ("start_ms", "end_ms", "fps") if getattr(self, n) is not None]
            if given:
                raise ValueError(f"a png is one frame at `at_ms`; {', '.join(given)} "
                                 "belong to a webm")
            return self
        if self.at_ms is not None:
            raise ValueError("`at_ms` is for a png; a webm takes `start_ms` and `end_ms`")
        if self.start_ms is not None and self.end_ms is not None \
                and self.end_ms <= self.start_ms:
            raise ValueError(f"end_ms ({self.end_ms}) must come after start_ms "
                             f"({self.start_ms})")
        if self.width % 2 or self.height % 2:
            raise ValueError(f"a webm's width and height must be even (VP8 stores colour "
                             f"at half resolution), not {self.width}x{self.height}")
        return self

    def filled(self) -> ExportRequest:
        """The same request with its defaults written out: two requests for the same
        export compare equal."""
        if self.format == "png":
            return self.model_copy(update={"at_ms": self.at_ms or 0})
        return self.model_copy(update={"start_ms": self.start_ms or 0,
                                       "fps": self.fps or 10})

    @property
    def extension(self) -> str:
        return self.format


class ExportState(enum.StrEnum):
    QUEUED = "queued"  # accepted; its task waits for an export slot (RRSTREAM_EXPORT_SLOTS)
    RUNNING = "running"  # its task replays the recording
    DONE = "done"  # the file is there
    FAILED = "failed"  # `error` says why

    @property
    def finished(self) -> bool:
        return self in (ExportState.DONE, ExportState.FAILED)


EXPORT_TRANSITIONS: dict[ExportState, frozenset[ExportState]] = {
    ExportState.QUEUED: frozenset({ExportState.RUNNING, ExportState.FAILED}),
    ExportState.RUNNING: frozenset({ExportState.DONE, ExportState.FAILED}),
    ExportState.DONE: frozenset(),
    ExportState.FAILED: frozenset(),
}


class ExportJob(BaseModel):
    """One export, as `GET /recordings/{id}/exports/{job}` shows it."""

    id: str
    recording_id: str
    request: ExportRequest = Field(description="What was asked, defaults filled in.")
    state: ExportState = ExportState.QUEUED
    progress: float = Field(default=0.0, ge=0, le=1, description="Frames rendered / frames.")
    frames: int = Field(default=0, description="Frames rendered so far.")
    frames_total: int | None = Field(default=None, description="Frames of the whole export, "
                                     "known once it runs.")
    captured: int = Field(default=0, description="Frames that needed a new screenshot; the "
                          "others repeat the one before (nothing changed in between).")
    error: str | None = Field(default=None, description="Why it failed, in words.")
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    node_id: str | None = Field(default=None, description="The Ray node that renders it and "
                                "holds its file.")
    size_bytes: int | None = Field(default=None, description="The file's size, once done.")
    duration_ms: int | None = Field(default=None, description="What the video covers.")
    file_url: str | None = Field(default=None, description="Where to fetch the file once done "
                                 "(`GET`, same API key).")

    @property
    def media_type(self) -> str:
        return "video/webm" if self.request.format == "webm" else "image/png"


@dataclass(slots=True, frozen=True)
class ExportProgress:
    """What an export task reports while it renders."""

    node_id: str
    frames: int
    frames_total: int
    captured: int


@dataclass(slots=True, frozen=True)
class ExportResult:
    """What an export task reports last: the file it wrote, on its node or (with a shared
    recording store) in the store."""

    node_id: str
    path: str
    size_bytes: int
    frames: int
    captured: int
    duration_ms: int


__all__ = ["EXPORT_TRANSITIONS", "MAX_FPS", "MAX_HEIGHT", "MAX_WIDTH", "ExportFormat",
           "ExportJob", "ExportProgress", "ExportRequest", "ExportResult", "ExportState"]
