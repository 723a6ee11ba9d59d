"""Looking at the Chromium processes and temp directories a test's sessions leave, and
crashing a page from outside (CDP `Page.crash`), as a renderer crash would."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from playwright.async_api import async_playwright

from pipeline.browser import BrowserEndpoint, connect_shared
from pipeline.browser_dirs import browsers_root


def chromium_under(pid: int | None) -> list[psutil.Process]:
    """A Chromium browser process and every live process below it."""
    if pid is None:
        return []
    try:
        browser = psutil.Process(pid)
        found = [browser, *browser.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    return [p for p in found if _alive(p)]


def chromium_in_root(owner: int) -> list[psutil.Process]:
    """Every live Chromium process whose profile is in a directory of the browsers' root
    owned by process `owner`, with their children (other test runs on the machine have
    theirs in the same root)."""
    prefix = f"{browsers_root()}{os.sep}{owner}-"
    found: dict[int, psutil.Process] = {}
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            if "chrom" not in (process.info["name"] or "").lower():
                continue
            if any(prefix in arg for arg in process.info["cmdline"] or ()):
                for p in (process, *process.children(recursive=True)):
                    found[p.pid] = p
        except psutil.Error:
            continue
    return [p for p in found.values() if _alive(p)]


def renderers(processes: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for process in processes:
        try:
            if "--type=renderer" in process.cmdline():
                out.append(process)
        except psutil.Error:
            continue
    return out


def cpu_percent(processes: list[psutil.Process], seconds: float = 1.0) -> dict[int, float]:
    """Each process's CPU over `seconds` (100 = one core); gone ones are left out."""
    for process in processes:
        try:
            process.cpu_percent(None)
        except psutil.Error:
            continue
    time.sleep(seconds)
    out = {}
    for process in processes:
        try:
            if _alive(process):
                out[process.pid] = process.cpu_percent(None)
        except psutil.Error:
            continue
    return out


def root_entries() -> set[str]:
    try:
        return {p.name for p in browsers_root().iterdir()}
    except FileNotFoundError:
        return set()


def playwright_dirs_in_root() -> list[Path]:
    """Profiles and artifacts under the browsers' root: where they go instead of /tmp."""
    root = browsers_root()
    if not root.exists():
        return []
    return [p for p in root.glob("*/*") if p.name.startswith(("playwright", "org.chromium"))]


async def crash_page(endpoint: BrowserEndpoint, title: str) -> None:
    """Crashes the renderer of the page titled `title` in the browser server at `endpoint`
    (CDP `Page.crash` from a client of its own: another client's pages are targets it can
    attach to)."""
    async with async_playwright() as playwright:
        browser = await connect_shared(playwright, endpoint)
        try:
            cdp = await browser.new_browser_cdp_session()
            targets = (await cdp.send("Target.getTargets"))["targetInfos"]
            target = next(t for t in targets if t["type"] == "page" and t["title"] == title)
            attached = await cdp.send("Target.attachToTarget",
                                      {"targetId": target["targetId"], "flatten": False})
            message = json.dumps({"id": 1, "method": "Page.crash"})
            await cdp.send("Target.sendMessageToTarget",
                           {"sessionId": attached["sessionId"], "message": message})
        finally:
            await browser.close()


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> float:
    """Waits for `condition`; returns how long it took."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout_s:
            raise AssertionError(f"never happened within {timeout_s:g} s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - began


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
