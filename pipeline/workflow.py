"""Runs typed workflow steps against a Playwright page."""

from __future__ import annotations

import asyncio

from playwright.async_api import FrameLocator, Page

from pipeline.steps import (
    ClickStep,
    FillStep,
    GotoStep,
    HoverStep,
    PressStep,
    ScrollStep,
    Step,
    TypeStep,
    WaitForStep,
    WaitStep,
)


async def run_step(page: Page, step: Step) -> None:
    """Runs one step; Playwright errors propagate for the caller to record."""
    scope: Page | FrameLocator = page.frame_locator(step.frame) if step.frame else page
    timeout = step.timeout_ms
    match step:
        case GotoStep():
            await page.goto(str(step.url), wait_until=step.wait_until, timeout=timeout)
        case ClickStep():
            await scope.locator(step.selector).click(timeout=timeout)
        case FillStep():
            await scope.locator(step.selector).fill(step.value, timeout=timeout)
        case TypeStep():
            await scope.locator(step.selector).press_sequentially(
                step.text, delay=step.delay_ms, timeout=timeout
            )
        case PressStep():
            await scope.locator(step.selector).press(step.key, timeout=timeout)
        case HoverStep():
            await scope.locator(step.selector).hover(timeout=timeout)
        case ScrollStep():
            await page.mouse.wheel(step.x, step.y)
        case WaitForStep():
            await scope.locator(step.selector).wait_for(state=step.state, timeout=timeout)
        case WaitStep():
            await asyncio.sleep(step.ms / 1000.0)
        case _:
            raise TypeError(f"unknown step {step!r}")


__all__ = ["run_step"]
