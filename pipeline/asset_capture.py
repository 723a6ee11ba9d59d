"""AssetCapture: the stylesheets, fonts and images a session's browser loaded, handed to
its node's asset cache and named in its stream (pipeline/asset_cache.py,
pipeline/asset_urls.py).

Playwright tells the context of every response; for a stylesheet, font or image (GET,
2xx, http or https, at most MAX_ASSET_BYTES) the bytes the browser got are fetched over
CDP (`response.body()`), the very bytes its cookies and its origin gave it, so nothing is
fetched a second time and the network policy sees no new request. Each asset reaches
the cache before its URL is rewritten in the stream, so a viewer never gets a name the
gateway cannot serve yet; one whose URL the stream already carried (it loaded after the
page's snapshot) calls `on_late`, and the session takes a checkout that names it. A URL
is captured once a session (its first answer stands: a page whose image changes under
the same URL shows the first one to viewers). Off the batch path: bodies are fetched by
tasks of their own, a few at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from playwright.async_api import BrowserContext, Response
from playwright.async_api import Error as PlaywrightError

from pipeline.asset_cache import MAX_ASSET_BYTES, Asset
from pipeline.asset_urls import AssetUrls
from pipeline.errors import describe_error

KINDS = frozenset({"stylesheet", "font", "image"})  # Playwright's resource types
_AT_ONCE = 4  # bodies fetched at a time
# Responses waiting for their body at most: a page that loads thousands of images at once
# has the rest keep their URLs rather than hold their responses here.
_MAX_WAITING = 256
_log = logging.getLogger(__name__)


@runtime_checkable
class AssetSink(Protocol):
    """Where captured assets go (the node's streamer actor in production:
    pipeline/actors.py StreamerSink)."""

    async def put_asset(self, asset: Asset) -> None: ...


_FONT_TYPES = frozenset({"application/font-woff", "application/font-woff2",
                         "application/x-font-woff", "application/x-font-ttf",
                         "application/vnd.ms-fontobject", "application/octet-stream"})


def served_type(kind: str, content_type: str) -> str:
    """The content type an asset is served with: the one its server gave if it fits its
    kind (an image type for an image, a font type for a font), else plain bytes, so the
    gateway's origin never serves a captured response as a page or a script."""
    main = content_type.split(";", 1)[0].strip().lower()
    if kind == "image" and main.startswith("image/"):
        return main
    if kind == "font" and (main.startswith("font/") or main in _FONT_TYPES):
        return main
    return "application/octet-stream"


def css_text(body: bytes, content_type: str) -> str:
    """A stylesheet's text, in the charset its server named (UTF-8 otherwise)."""
    charset = "utf-8-sig"
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        return body.decode(charset, "replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8-sig", "replace")


def wanted(kind: str, method: str, status: int, url: str, length: str | None) -> bool:
    """Whether a response is an asset to capture, from its request's resource type and
    method, its status, URL and Content-Length (if it said one)."""
    if kind not in KINDS or method != "GET" or not 200 <= status < 300:
        return False
    if not url.startswith(("http://", "https://")):
        return False
    if length is not None and length.isdigit() and int(length) > MAX_ASSET_BYTES:
        return False
    return True


class AssetCapture:
    def __init__(self, urls: AssetUrls, sink: Callable[[], AssetSink | None],
                 log: logging.LoggerAdapter[logging.Logger] | None = None,
                 on_late: Callable[[], None] | None = None) -> None:
        """`sink()`: where assets go now (the session's current stream), or None;
        `on_late()`: an asset was captured after the stream carried its URL."""
        self._urls = urls
        self._sink = sink
        self._on_late = on_late
        self._log = log or logging.LoggerAdapter(_log, {})
        self._fetching: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(_AT_ONCE)
        self._adding = asyncio.Lock()  # one asset at a time: a stylesheet's newest copy wins
        self.captured = 0  # assets handed to the cache

    def install(self, context: BrowserContext) -> None:
        context.on("response", self._on_response)

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    async def take(self, url: str, kind: str, body: bytes, content_type: str) -> None:
        """Hands what the browser loaded from `url` to the cache, then names it in the
        stream (and anew each stylesheet that refers to it)."""
        sink = self._sink()
        if sink is None or not body or len(body) > MAX_ASSET_BYTES:
            return
        async with self._adding:
            if kind == "stylesheet":
                late = await self._add(sink, url,
                                       self._urls.add_sheet(url, css_text(body, content_type)))
            else:
                late = await self._add(sink, url,
                                       Asset.of(body, served_type(kind, content_type)))
            for sheet in self._urls.sheets_using(url):
                late = await self._add(sink, sheet, self._urls.sheet(sheet)) or late
        if late and self._on_late is not None:
            self._on_late()

    async def _add(self, sink: AssetSink, url: str, asset: Asset) -> bool:
        if self._urls.id_of(url) == asset.id:
            return False
        await sink.put_asset(asset)
        self.captured += 1
        return self._urls.add(url, asset)

    def _on_response(self, response: Response) -> None:
        request = response.request
        url = response.url
        if url in self._fetching or url in self._urls or len(self._fetching) >= _MAX_WAITING:
            return
        if not wanted(request.resource_type, request.method, response.status, url,
                      response.headers.get("content-length")):
            return
        self._fetching.add(url)
        task = asyncio.ensure_future(self._fetch(response, request.resource_type))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, response: Response, kind: str) -> None:
        url = response.url
        try:
            async with self._slots:
                body = await response.body()
            content_type = response.headers.get("content-type") or "application/octet-stream"
            await self.take(url, kind, body, content_type)
        except PlaywrightError as exc:  # the page went away, or Chromium kept no body
            self._log.debug("no asset from %s: %s", url, describe_error(exc))
        except Exception as exc:  # its stream is lost, or the streamer refused it
            self._log.warning("the asset %s was not cached: %s", url, describe_error(exc))
        finally:
            self._fetching.discard(url)


__all__ = ["KINDS", "AssetCapture", "AssetSink", "css_text", "served_type", "wanted"]
