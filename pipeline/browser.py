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


# Chromium keeps only the last --disable-features switch, and ours comes after
# Playwright's own, so ours repeats Playwright's list (1.65's; tests/unit/test_browser.py
# checks it against the installed driver) before adding what we turn off.
PLAYWRIGHT_DISABLED_FEATURES = [
    "AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose", "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable", "LensOverlay", "MediaRouter", "PaintHolding",
    "ThirdPartyStoragePartitioning", "AvoidCorsURLLoaderRestartOnRedirect",
    "TcpPortRandomizationWin", "OptimizationHints", "NetworkTimeServiceQuerying", "AimEnabled",
    "PreconnectToSearch", "msForceBrowserSignIn", "msEdgeUpdateLaunchServicesPreferredVersion",
]
# Every browser window (one per context) preloads the omnibox popup's WebUI in a renderer
# of its own: ~37 MB per session for a popup a headless browser never shows.
_DISABLED_FEATURES = ["WebUIOmniboxPopup", "WebUIOmniboxAimPopup", "WebUIOmniboxFullPopup"]


def launch_args(settings: Settings) -> list[str]:
    features = ",".join([*PLAYWRIGHT_DISABLED_FEATURES, *_DISABLED_FEATURES])
    args = [*_QUIET_FLAGS, *_LIVE_FLAGS, f"--disable-features={features}", *settings.browser_args]
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


__all__ = ["PLAYWRIGHT_DISABLED_FEATURES", "launch_args", "launch_chromium",
           "resolve_executable", "start_playwright"]
