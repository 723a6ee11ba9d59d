"""ExportBrowser: the headless Chromium an export worker renders in, kept between exports.

Starting Playwright's driver and launching Chromium took ~1.5 s of the ~7 s an export of
the demo workflow took here. So a worker keeps both after an export (with
RRSTREAM_EXPORT_KEEP_BROWSER, the default) and the next export it runs only opens a
browser context of its own; one that finds the browser gone launches another. Chromium
and its driver run at RRSTREAM_EXPORT_NICE. They end with the worker: Playwright's
driver exits when its parent's pipe closes, and Chromium with it.
"""

from __future__ import annotations

import logging

import psutil
from playwright.async_api import Browser, Playwright
from playwright.async_api import Error as PlaywrightError

from pipeline.browser import launch_args, resolve_executable, start_playwright
from pipeline.config import Settings
from pipeline.errors import BrowserLaunchError, describe_error

_log = logging.getLogger(__name__)
_EXPORT_FLAGS = [
    # Nothing resolves, should a request ever get past the renderer's route.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
    "--mute-audio",
]


class ExportBrowser:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    async def get(self) -> Browser:
        """The running browser, launched first if there is none (or it died)."""
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        await self.close()
        settings = self._settings
        self._playwright = await start_playwright(settings)
        executable = resolve_executable(self._playwright, settings.chromium)
        try:
            self._browser = await self._playwright.chromium.launch(
                executable_path=executable, headless=True,
                args=[*launch_args(settings), *_EXPORT_FLAGS],
                handle_sigint=False, handle_sigterm=False)
        except PlaywrightError as exc:
            raise BrowserLaunchError(executable, str(exc).splitlines()[0]) from exc
        if settings.export_nice:
            lower_children(settings.export_nice)
        return self._browser

    async def close(self) -> None:
        """Closes the browser, then stops Playwright; each runs if the other failed."""
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = None
        try:
            if browser is not None:
                await browser.close()
        except PlaywrightError as exc:
            _log.warning("the export browser did not close: %s", describe_error(exc))
        finally:
            if playwright is not None:
                await playwright.stop()


def lower_children(nice: int) -> None:
    """Every process this one started (Playwright's driver, Chromium, its zygotes, whose
    later renderers inherit it) to at least `nice`."""
    for child in psutil.Process().children(recursive=True):
        try:
            if child.nice() < nice:
                child.nice(nice)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # gone already, or not ours to change


__all__ = ["ExportBrowser", "lower_children"]
