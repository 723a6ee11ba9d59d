"""The built-in demo workflow: a short, visible tour of the bundled demo site."""

from __future__ import annotations

from pydantic import AnyHttpUrl

from pipeline.steps import (
    ClickStep,
    FillStep,
    GotoStep,
    PressStep,
    ScrollStep,
    Step,
    TypeStep,
    WaitForStep,
    WaitStep,
)

# Pauses between steps so someone watching sees each change land.
_BEAT_MS = 700
_SHORT_MS = 300


def demo_steps(site_url: str) -> list[Step]:
    """The demo workflow against a running `DemoSite` whose main origin is `site_url`.

    It takes about 25 s: the home page and a click inside the cross-origin widget,
    the sign-up form typed into and submitted, the list grown by button, by typing
    and on its own, a link to the long about page scrolled down and up, then home.
    """
    base = site_url.rstrip("/")
    steps: list[Step] = [
        # Home page, and the widget in its cross-origin iframe.
        GotoStep(url=AnyHttpUrl(f"{base}/index.html")),
        WaitForStep(selector="#widget"),
        WaitForStep(frame="#widget", selector="#widget-button"),
        WaitStep(ms=1_000),
        ClickStep(frame="#widget", selector="#widget-button"),
        WaitForStep(frame="#widget", selector="#widget-click-1"),
        WaitStep(ms=_BEAT_MS),
        ClickStep(frame="#widget", selector="#widget-button"),
        WaitForStep(frame="#widget", selector="#widget-click-2"),
        WaitStep(ms=_BEAT_MS),
        # The sign-up form, reached through the navigation bar.
        ClickStep(selector="#nav-form"),
        WaitForStep(selector="#signup-form"),
        WaitStep(ms=_SHORT_MS),
        TypeStep(selector="#name", text="Ada Lovelace", delay_ms=70),
        WaitStep(ms=_SHORT_MS),
        FillStep(selector="#email", value="ada@example.com"),
        WaitStep(ms=_SHORT_MS),
        FillStep(selector="#password", value="analytical-engine"),
        WaitStep(ms=_SHORT_MS),
        # No select step exists: a closed <select> on Linux moves its choice on arrow keys.
        PressStep(selector="#plan", key="ArrowDown"),
        WaitStep(ms=_SHORT_MS),
        TypeStep(
            selector="#message", text="Streaming a live browser to many viewers.", delay_ms=30
        ),
        WaitStep(ms=_SHORT_MS),
        ClickStep(selector="#terms"),
        WaitStep(ms=_SHORT_MS),
        ClickStep(selector="#submit"),
        WaitForStep(selector="#confirmation"),
        WaitStep(ms=1_500),
        # The list: by button, by typing + Enter, and on its own.
        ClickStep(selector="#nav-list"),
        WaitForStep(selector="#add-item"),
        WaitStep(ms=_SHORT_MS),
        ClickStep(selector="#add-item"),
        WaitStep(ms=_SHORT_MS),
        ClickStep(selector="#add-item"),
        WaitStep(ms=_SHORT_MS),
        TypeStep(selector="#new-item", text="Write the release notes", delay_ms=40),
        PressStep(selector="#new-item", key="Enter"),
        WaitStep(ms=_SHORT_MS),
        TypeStep(selector="#new-item", text="Invite the team", delay_ms=40),
        PressStep(selector="#new-item", key="Enter"),
        WaitForStep(selector="#items li:nth-child(4)"),
        WaitStep(ms=3_000),
        # A real navigation to the long about page, scrolled down and back up.
        ClickStep(selector="#nav-about"),
        WaitForStep(selector="#about"),
        WaitStep(ms=_BEAT_MS),
        ScrollStep(y=500),
        WaitStep(ms=_BEAT_MS),
        ScrollStep(y=500),
        WaitStep(ms=_BEAT_MS),
        ScrollStep(y=500),
        WaitStep(ms=_BEAT_MS),
        ScrollStep(y=800),
        WaitStep(ms=1_000),
        ScrollStep(y=-1_200),
        WaitStep(ms=_BEAT_MS),
        ScrollStep(y=-1_200),
        WaitStep(ms=_BEAT_MS),
        # Back home.
        ClickStep(selector="#nav-home"),
        WaitForStep(selector="#widget"),
        WaitStep(ms=1_500),
    ]
    return steps


__all__ = ["demo_steps"]
