"""AssetUrls: which URL the session's browser loaded as which asset, and the stream
rewritten to name `/assets/<sha256>` instead.

Rewriting happens in the session actor, on the batch text as the page sent it, once per
push (pipeline/outbox.py), never in the page: the page would need the map first, and its
main thread is the session's most contended resource. A URL is an absolute http(s) URL
as rrweb writes it (it makes `src`, `href` and CSS `url()`s absolute), replaced where it
stands whole as an attribute's value (a JSON string's start), in a `srcset` list or in a
CSS `url()`; a URL in the page's words ("see https://…") stays as the page shows it, and
so does one the browser did not load (yet). Which URLs the stream's
current segment carries is remembered, so an asset captured after the segment named its
URL (an image that loaded after the page's snapshot, a stylesheet's font) says so (`add`
answers True), and the session takes a new checkout that names it. A batch with no URL
costs one scan of its text.

A stylesheet is served as a copy of its own whose `url()`s (fonts, images, imports) name
the assets captured so far and are absolute otherwise, since relative ones would resolve
against `/assets/`. Its fonts load after it, so each asset it refers to makes a new copy
(a new hash) that the next checkout names.
"""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict
from urllib.parse import urljoin, urlsplit

from pipeline.asset_cache import ASSET_PATH, Asset
from pipeline.protocol import PageBatch

# An absolute URL in JSON text: it ends at a quote, a backslash (an escaped quote in CSS
# text), whitespace (srcset), or a parenthesis (CSS url()).
_URL = re.compile(r"https?://[^\s\"'\\()<>]+")
# What comes before a URL the stream may name an asset in: a JSON string's start (an
# attribute's value), a srcset's next entry, a CSS url() (JSON escapes its double quote).
_CONTEXTS = ('":"', ",", ", ", "url(", 'url(\\"', "url('")
_CONTEXT_CHARS = max(len(c) for c in _CONTEXTS)
# CSS `url(...)`, quoted or not.
_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)'"\s]*))\s*\)""", re.I)
MAX_URLS = 20_000  # URLs remembered per session, oldest out
MAX_SEEN = 20_000  # URLs remembered of the current segment (past it, no new checkout)
MAX_SHEET_CHARS = 16 * 2**20  # stylesheet text kept to make new copies of, oldest out
CSS_TYPE = "text/css; charset=utf-8"


def sheet_refs(text: str, base: str) -> list[str]:
    """The absolute http(s) URLs a stylesheet's `url()`s name."""
    found = []
    for match in _CSS_URL.finditer(text):
        ref = _absolute(next(g for g in match.groups() if g is not None), base)
        if ref is not None:
            found.append(ref)
    return found


def _absolute(ref: str, base: str) -> str | None:
    ref = ref.strip()
    if not ref or ref.startswith(("data:", "#", "blob:")):
        return None
    url = urljoin(base, ref)
    return url if urlsplit(url).scheme in ("http", "https") else None


class AssetUrls:
    def __init__(self) -> None:
        self._ids: OrderedDict[str, str] = OrderedDict()  # URL -> asset id
        self._sheets: OrderedDict[str, str] = OrderedDict()  # stylesheet URL -> its text
        self._sheet_chars = 0
        self._users: dict[str, set[str]] = {}  # URL -> the stylesheets that refer to it
        self._seen: set[str] = set()  # the URLs the stream's current segment carries
        # A stylesheet copy's id -> the ids it names: a recording keeps those too.
        self._named_by: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, url: object) -> bool:
        return url in self._ids

    def id_of(self, url: str) -> str | None:
        return self._ids.get(url)

    def add(self, url: str, asset: Asset) -> bool:
        """From now on the stream names `asset` where it had `url`. True if the stream's
        current segment carries `url` otherwise (as it is, or naming an older copy): a
        new checkout would show the asset."""
        earlier = self._ids.pop(url, None)
        self._ids[url] = asset.id
        while len(self._ids) > MAX_URLS:
            self._ids.popitem(last=False)
        return url in self._seen and earlier != asset.id

    # -- stylesheets ---------------------------------------------------------------------------

    def add_sheet(self, url: str, text: str) -> Asset:
        """Keeps a stylesheet the page loaded; its copy to serve (see `sheet`)."""
        self._forget_sheet(url)
        self._sheets[url] = text
        self._sheet_chars += len(text)
        for ref in sheet_refs(text, url):
            self._users.setdefault(ref, set()).add(url)
        while self._sheet_chars > MAX_SHEET_CHARS and len(self._sheets) > 1:
            self._forget_sheet(next(iter(self._sheets)))
        return self.sheet(url)

    def sheet(self, url: str) -> Asset:
        """The stylesheet at `url` with each `url()` naming its asset, or absolute."""
        text = self._sheets[url]
        names: dict[str, None] = {}

        def replaced(match: re.Match[str]) -> str:
            ref = _absolute(next(g for g in match.groups() if g is not None), url)
            if ref is None:
                return match.group(0)
            known = self._ids.get(ref)
            if known is None:
                return f'url("{ref}")'
            names[known] = None
            return f'url("{ASSET_PATH}{known}")'

        asset = Asset.of(_CSS_URL.sub(replaced, text).encode(), CSS_TYPE)
        if names:
            self._named_by[asset.id] = tuple(names)
            while len(self._named_by) > MAX_URLS:
                self._named_by.popitem(last=False)
        return asset

    def sheets_using(self, url: str) -> list[str]:
        """The kept stylesheets whose `url()`s name `url`."""
        return [sheet for sheet in self._users.get(url, ()) if sheet in self._sheets]

    def _forget_sheet(self, url: str) -> None:
        text = self._sheets.pop(url, None)
        if text is None:
            return
        self._sheet_chars -= len(text)
        for ref in sheet_refs(text, url):
            users = self._users.get(ref)
            if users is not None:
                users.discard(url)
                if not users:
                    del self._users[ref]

    # -- the stream ----------------------------------------------------------------------------

    def rewrite(self, batches: list[PageBatch]) -> list[PageBatch]:
        """`batches` naming the captured assets instead of their URLs; each batch that
        names any lists their ids in `assets`, with those its stylesheets name (its
        recording keeps them)."""
        return [self._rewritten(batch) for batch in batches]

    def _rewritten(self, batch: PageBatch) -> PageBatch:
        ids, seen, source = self._ids, self._seen, batch.text
        if batch.checkout:
            seen.clear()  # a new segment: viewers need nothing from before it
        named: dict[str, None] = {}

        def replaced(match: re.Match[str]) -> str:
            url = match.group(0)
            start = match.start()
            if not source.endswith(_CONTEXTS, max(0, start - _CONTEXT_CHARS), start):
                return url  # in the page's words
            if len(seen) < MAX_SEEN:
                seen.add(url)
            known = ids.get(url)
            if known is None:
                return url
            named[known] = None
            for inner in self._named_by.get(known, ()):
                named[inner] = None
            return ASSET_PATH + known

        text = _URL.sub(replaced, source)
        if not named:
            return batch
        return dataclasses.replace(batch, text=text, assets=tuple(named))


__all__ = ["CSS_TYPE", "MAX_SHEET_CHARS", "MAX_URLS", "AssetUrls", "sheet_refs"]
