"""Finding and launching Chromium for a session."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass
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
# WebGL without a GPU (every node here runs --disable-gpu): Chromium's software renderer,
# SwiftShader, through ANGLE (RRSTREAM_WEBGL). Chrome no longer falls back to it by itself
# (Debian's Chromium 156 still did), so it is asked for. Chromium calls it "unsafe": a
# page's shaders are compiled to machine code in its GPU process, a larger attack surface
# than no WebGL at all; RRSTREAM_WEBGL=false turns WebGL off (--disable-webgl).
_WEBGL_FLAGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
# The seed's flags: keep timers and rendering running in a window nobody looks at.
_LIVE_FLAGS = [
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--disable-ipc-flooding-protection",
]


# The header a node's shared browser server wants its launch's secret in
# (pipeline/browser_server.cjs).
BROWSER_SECRET_HEADER = "x-rrstream-browser-secret"


@dataclass(slots=True, frozen=True)
class BrowserEndpoint:
    """Where a node's shared browser server listens, and the secret it admits by: what the
    node's browser host hands its session actors (pipeline/browser_host.py)."""

    url: str  # ws+unix://<socket>:/playwright
    secret: str

    def headers(self) -> dict[str, str]:
        return {BROWSER_SECRET_HEADER: self.secret}

    def __repr__(self) -> str:  # never in a log
        return f"BrowserEndpoint({self.url!r})"


async def connect_shared(playwright: Playwright, endpoint: BrowserEndpoint) -> Browser:
    """Connects a session's own Playwright to a node's shared browser server."""
    return await playwright.chromium.connect(endpoint.url, headers=endpoint.headers())


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
# Autofill asks content-autofill.googleapis.com about every form a page shows: through a
# session's egress proxy that is the session's own traffic, and no business of a page's.
_DISABLED_FEATURES = ["WebUIOmniboxPopup", "WebUIOmniboxAimPopup", "WebUIOmniboxFullPopup",
                      "AutofillServerCommunication"]


def launch_args(settings: Settings) -> list[str]:
    features = ",".join([*PLAYWRIGHT_DISABLED_FEATURES, *_DISABLED_FEATURES])
    args = [*_QUIET_FLAGS, *(_WEBGL_FLAGS if settings.webgl else ["--disable-webgl"]),
            *_LIVE_FLAGS,
            f"--disable-features={features}", *settings.browser_args]
    if settings.host_resolver_rules.strip():
        # The same rules resolve names for the network policy's own check.
        args.append(f"--host-resolver-rules={settings.host_resolver_rules}")
    if settings.private_networks_blocked:
        # WebRTC's UDP never passes the session's egress proxy. With this policy Chromium
        # gathers no UDP candidates and sends no STUN at all (tests/integration/
        # test_network_policy.py); WebRTC can still go over TURN/TCP, through the proxy,
        # which checks the address. (Chrome's --force-webrtc-ip-handling-policy did not
        # hold in headless Chromium: it still sent STUN to an inside address.)
        args.append("--webrtc-ip-handling-policy=disable_non_proxied_udp")
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
    return args


async def start_playwright(settings: Settings, temp_dir: Path | None = None) -> Playwright:
    """Starts Playwright, whose node driver gets RRSTREAM_DRIVER_NODE_OPTIONS and, with
    `temp_dir`, TMPDIR there (so the profiles and artifacts of a Chromium it launches land
    in it: pipeline/browser_dirs.py). The driver takes this process's environment when it
    is spawned; Playwright has no other way in."""
    tempfile.gettempdir()  # fixes this process's own before TMPDIR changes for a moment
    # The driver copies os.environ a loop turn after start() begins: two sessions starting
    # at once in one process (tests) must not see each other's changes.
    async with _environment_lock():
        changes: dict[str, str] = {}
        extra = settings.driver_node_options
        if extra:
            before = os.environ.get("NODE_OPTIONS")
            changes["NODE_OPTIONS"] = f"{before} {extra}" if before else extra
        if temp_dir is not None:
            changes.update({name: str(temp_dir) for name in ("TMPDIR", "TMP", "TEMP")})
        saved = {name: os.environ.get(name) for name in changes}
        os.environ.update(changes)
        try:
            return await async_playwright().start()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


_ENV_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary())


def _environment_lock() -> asyncio.Lock:
    return _ENV_LOCKS.setdefault(asyncio.get_running_loop(), asyncio.Lock())


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


__all__ = ["BROWSER_SECRET_HEADER", "PLAYWRIGHT_DISABLED_FEATURES", "BrowserEndpoint",
           "connect_shared", "launch_args", "launch_chromium",
           "resolve_executable", "start_playwright"]
