"""Finding and launching Chromium for a session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.async_api import Browser, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from pipeline.config import Settings
from pipeline.errors import BrowserLaunchError, BrowserNotFound

# Without these Chromium keeps dialling Google services, which a closed network refuses.
_QUIET_FLAGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--no-first-run",
    "--disable-default-apps",
]
# The seed's flags: keep timers and rendering running in a window nobody looks at.
_LIVE_FLAGS = [
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--disable-ipc-flooding-protection",
]


def resolve_executable(playwright: Playwright, override: str | None) -> str | None:
    """The Chromium binary to launch; None means Playwright's own build.

    Order: an explicit path (RRSTREAM_CHROMIUM), Playwright's bundled Chromium when
    installed, then `chromium` on PATH (Debian's package).
    """
    if override:
        if os.access(override, os.X_OK):
            return override
        raise BrowserNotFound([f"RRSTREAM_CHROMIUM={override} (not an executable file)"])
    bundled = playwright.chromium.executable_path
    if bundled and Path(bundled).exists():
        return None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise BrowserNotFound([bundled or "Playwright's Chromium", "chromium on PATH"])


# What Playwright's own launch adds, for the shared Chromium we launch ourselves: pages
# must behave the same whichever way their browser was started.
_PLAYWRIGHT_FLAGS = [
    "--disable-field-trial-config",
    "--disable-back-forward-cache",
    "--disable-breakpad",
    "--disable-component-extensions-with-background-pages",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-hang-monitor",
    "--disable-popup-blocking",
    "--disable-prompt-on-repost",
    "--no-default-browser-check",
    "--no-service-autorun",
    "--password-store=basic",
    "--use-mock-keychain",
    "--force-color-profile=srgb",
    "--metrics-recording-only",
    "--allow-pre-commit-input",
    "--enable-unsafe-swiftshader",
]
_HEADLESS_FLAGS = [
    "--headless",
    "--hide-scrollbars",
    "--mute-audio",
    "--blink-settings=primaryHoverType=2,availableHoverTypes=2,primaryPointerType=4,"
    "availablePointerTypes=4",
]


def executable_path(playwright: Playwright, settings: Settings) -> str:
    """The Chromium binary as a path, for launching it without Playwright."""
    return resolve_executable(playwright, settings.chromium) or playwright.chromium.executable_path


def host_args(settings: Settings) -> list[str]:
    """Flags of a Chromium launched without Playwright (the shared browser of a node)."""
    headless = _HEADLESS_FLAGS if settings.headless else []
    return [*_PLAYWRIGHT_FLAGS, *launch_args(settings), *headless, "--no-startup-window"]


def launch_args(settings: Settings) -> list[str]:
    args = [*_QUIET_FLAGS, *_LIVE_FLAGS, *settings.browser_args]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
    return args


async def start_playwright(settings: Settings) -> Playwright:
    """Starts Playwright, whose node driver gets RRSTREAM_DRIVER_NODE_OPTIONS. The driver
    takes this process's environment when it is spawned; Playwright has no other way in."""
    before = os.environ.get("NODE_OPTIONS")
    extra = settings.driver_node_options
    if extra:
        os.environ["NODE_OPTIONS"] = f"{before} {extra}" if before else extra
    try:
        return await async_playwright().start()
    finally:
        if before is None:
            os.environ.pop("NODE_OPTIONS", None)
        else:
            os.environ["NODE_OPTIONS"] = before


async def launch_chromium(playwright: Playwright, settings: Settings) -> Browser:
    executable = resolve_executable(playwright, settings.chromium)
    try:
        return await playwright.chromium.launch(
            executable_path=executable,
            headless=settings.headless,
            args=launch_args(settings),
            handle_sigint=False,
            handle_sigterm=False,
        )
    except PlaywrightError as exc:
        raise BrowserLaunchError(executable, str(exc).splitlines()[0]) from exc


__all__ = ["executable_path", "host_args", "launch_args", "launch_chromium",
           "resolve_executable", "start_playwright"]
