"""Typed workflow steps a session runs in order against its page."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StrictInt, TypeAdapter

MAX_STEPS = 1_000  # a session's steps, those it was given and those added to it together


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    frame: str | None = Field(
        default=None,
        description="CSS selector of an <iframe>: run the step inside that frame.",
    )
    timeout_ms: StrictInt = Field(default=10_000, ge=0, le=600_000, description="Step time limit.")


class GotoStep(_Step):
    action: Literal["goto"] = "goto"
    url: AnyHttpUrl = Field(description="http(s) URL to open in the page.")
    wait_until: Literal["commit", "domcontentloaded", "load", "networkidle"] = "load"


class ClickStep(_Step):
    action: Literal["click"] = "click"
    selector: str = Field(min_length=1)


class FillStep(_Step):
    action: Literal["fill"] = "fill"
    selector: str = Field(min_length=1)
    value: str


class TypeStep(_Step):
    """Types character by character, so viewers see the text appear."""

    action: Literal["type"] = "type"
    selector: str = Field(min_length=1)
    text: str
    delay_ms: StrictInt = Field(default=40, ge=0, le=2_000)


class PressStep(_Step):
    action: Literal["press"] = "press"
    selector: str = Field(min_length=1)
    key: str = Field(min_length=1, description="A Playwright key name, e.g. Enter, Tab, a.")


class HoverStep(_Step):
    action: Literal["hover"] = "hover"
    selector: str = Field(min_length=1)


class ScrollStep(_Step):
    action: Literal["scroll"] = "scroll"
    x: StrictInt = Field(default=0, description="Horizontal delta in CSS pixels.")
    y: StrictInt = Field(default=0, description="Vertical delta in CSS pixels.")


class WaitForStep(_Step):
    action: Literal["wait_for"] = "wait_for"
    selector: str = Field(min_length=1)
    state: Literal["attached", "detached", "visible", "hidden"] = "visible"


class WaitStep(_Step):
    action: Literal["wait"] = "wait"
    ms: StrictInt = Field(ge=0, le=600_000, description="Pause in milliseconds.")


Step = Annotated[
    GotoStep
    | ClickStep
    | FillStep
    | TypeStep
    | PressStep
    | HoverStep
    | ScrollStep
    | WaitForStep
    | WaitStep,
    Field(discriminator="action"),
]

STEPS = TypeAdapter(list[Step])

__all__ = [
    "MAX_STEPS",
    "STEPS",
    "ClickStep",
    "FillStep",
    "GotoStep",
    "HoverStep",
    "PressStep",
    "ScrollStep",
    "Step",
    "TypeStep",
    "WaitForStep",
    "WaitStep",
]
