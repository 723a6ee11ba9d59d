"""Finding and launching Chromium for a session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.async_api import Browser, Playwright
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


def launch_args(settings: Settings) -> list[str]:
    args = [*_QUIET_FLAGS, *_LIVE_FLAGS, *settings.browser_args]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
    return args


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


__all__ = ["launch_args", "launch_chromium", "resolve_executable"]
