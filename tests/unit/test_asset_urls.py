"""The stream naming captured assets instead of their URLs (pipeline/asset_urls.py), and
what the capture hands the node's cache, in which order (pipeline/asset_capture.py)."""

from __future__ import annotations

import json

from pipeline.asset_cache import Asset
from pipeline.asset_capture import AssetCapture, css_text, served_type, wanted
from pipeline.asset_urls import CSS_TYPE, AssetUrls, sheet_refs
from pipeline.protocol import PageBatch

FONT = "https://fonts.example/f/inter.woff2"
SHEET = "https://cdn.example/css/site.css"
IMAGE = "https://img.example/p/secret.png?sig=a,b&x=1"


def page_json(value: object) -> str:
    """JSON as the page's recorder writes it (JSON.stringify: no spaces)."""
    return json.dumps(value, separators=(",", ":"))


def page_batch(*events: dict) -> PageBatch:
    return PageBatch(False, len(events), 1.0, 2.0, page_json(list(events)))


def snapshot_events() -> list[dict]:
    """What rrweb writes: absolute URLs in attributes and in inlined CSS text."""
    return [
        {"type": 2, "data": {"node": {"childNodes": [
            {"tagName": "link", "attributes": {"rel": "stylesheet", "href": SHEET}},
            {"tagName": "style", "attributes": {
                "_cssText": f'@font-face {{ font-family: Inter; src: url("{FONT}"); }}'
                            f" .hero {{ background: url({IMAGE}); }}"}},
            {"tagName": "img", "attributes": {"src": IMAGE,
                                              "srcset": f"{IMAGE} 1x, {IMAGE}&big 2x"}},
            {"tagName": "a", "attributes": {"href": "https://elsewhere.example/"}},
            {"tagName": "div", "attributes": {"style": f"background-image: url('{IMAGE}')"}},
            {"type": 3, "textContent": f"The picture is at {IMAGE}, as the page says."},
        ]}}},
    ]


def test_a_batch_names_each_captured_asset_where_its_url_was() -> None:
    urls = AssetUrls()
    font, image = Asset.of(b"wOF2", "font/woff2"), Asset.of(b"\x89PNG", "image/png")
    urls.add(FONT, font)
    urls.add(IMAGE, image)
    [rewritten] = urls.rewrite([page_batch(*snapshot_events())])
    events = json.loads(rewritten.text)
    nodes = events[0]["data"]["node"]["childNodes"]
    assert nodes[0]["attributes"]["href"] == SHEET  # not captured (yet): its URL stays
    css = nodes[1]["attributes"]["_cssText"]
    assert f'url("/assets/{font.id}")' in css and f"url(/assets/{image.id})" in css
    assert nodes[2]["attributes"]["src"] == f"/assets/{image.id}"
    assert nodes[2]["attributes"]["srcset"] == f"/assets/{image.id} 1x, {IMAGE}&big 2x"
    assert nodes[3]["attributes"]["href"] == "https://elsewhere.example/"
    assert nodes[4]["attributes"]["style"] == f"background-image: url('/assets/{image.id}')"
    assert nodes[5]["textContent"] == f"The picture is at {IMAGE}, as the page says."
    assert set(rewritten.assets) == {font.id, image.id}
    assert (rewritten.event_count, rewritten.first_ts, rewritten.checkout) == (1, 1.0, False)


def test_a_batch_naming_no_captured_asset_is_handed_on_as_it_is() -> None:
    batches = [page_batch(*snapshot_events())]
    [same] = AssetUrls().rewrite(batches)
    assert same is batches[0]
    urls = AssetUrls()
    urls.add("https://other.example/x.png", Asset.of(b"x", "image/png"))
    [same] = urls.rewrite(batches)
    assert same is batches[0] and same.assets == ()


def test_an_asset_captured_after_the_segment_carried_its_url_asks_for_a_checkout() -> None:
    urls = AssetUrls()
    snapshot = page_batch(*snapshot_events())
    checkout = PageBatch(True, snapshot.event_count, 1.0, 2.0, snapshot.text)
    urls.rewrite([checkout])
    image = Asset.of(b"\x89PNG", "image/png")
    assert urls.add(IMAGE, image)  # the snapshot showed its URL: a checkout names it
    assert not urls.add(IMAGE, image)  # the same again changes nothing
    assert not urls.add("https://never.example/shown.png", Asset.of(b"y", "image/png"))
    [again] = urls.rewrite([checkout])
    assert again.assets == (image.id,)
    # A new copy of a stylesheet the segment names (its font came): a checkout again.
    urls.add(SHEET, Asset.of(b"a {}", CSS_TYPE))
    urls.rewrite([checkout])
    assert urls.add(SHEET, Asset.of(b"a { font-family: F }", CSS_TYPE))
    # A new segment that does not carry the URL any more needs nothing.
    urls.rewrite([PageBatch(True, 1, 3.0, 3.0, '[{"type":4,"data":{}}]')])
    assert not urls.add(IMAGE, Asset.of(b"\x89PNG2", "image/png"))


def test_a_stylesheet_is_served_with_its_urls_absolute_or_naming_their_assets() -> None:
    text = ('@import url("print.css");\n@font-face { src: url(../f/inter.woff2) format("woff2"),'
            " url('data:font/woff2;base64,AAAA'); }\n.logo { background: url(\"/i/logo.svg\") }")
    font_url = "https://cdn.example/f/inter.woff2"  # relative to the sheet
    assert sheet_refs(text, SHEET) == ["https://cdn.example/css/print.css", font_url,
                                       "https://cdn.example/i/logo.svg"]
    urls = AssetUrls()
    first = urls.add_sheet(SHEET, text)
    assert first.content_type == CSS_TYPE
    served = first.data.decode()
    assert f'url("{font_url}")' in served and "url('data:font/woff2;base64,AAAA')" in served
    assert 'url("https://cdn.example/i/logo.svg")' in served
    assert urls.sheets_using(font_url) == [SHEET]
    font = Asset.of(b"wOF2", "font/woff2")
    urls.add(font_url, font)
    again = urls.sheet(SHEET)
    assert f'url("/assets/{font.id}")' in again.data.decode() and again.id != first.id


class Cache:
    """A node's cache as the capture sees it: what was put, in order."""

    def __init__(self, urls: AssetUrls) -> None:
        self.urls = urls
        self.put: list[Asset] = []
        self.named_before_put: list[str] = []

    async def put_asset(self, asset: Asset) -> None:
        # Nothing names an asset before the cache has it.
        if asset.id in {self.urls.id_of(u) for u in (FONT, SHEET, IMAGE)}:
            self.named_before_put.append(asset.id)
        self.put.append(asset)


async def test_an_asset_reaches_the_cache_before_the_stream_names_it() -> None:
    urls = AssetUrls()
    cache = Cache(urls)
    late: list[int] = []
    capture = AssetCapture(urls, lambda: cache, on_late=lambda: late.append(1))
    urls.rewrite([PageBatch(True, 1, 1.0, 1.0, page_json([{"href": SHEET}]))])
    await capture.take(SHEET, "stylesheet", f'@font-face {{ src: url("{FONT}") }}'.encode(),
                       "text/css")
    sheet_without_font = urls.id_of(SHEET)
    await capture.take(FONT, "font", b"wOF2", "font/woff2; charset=binary")
    font = urls.id_of(FONT)
    sheet_with_font = urls.id_of(SHEET)
    assert sheet_with_font != sheet_without_font  # a new copy naming the font
    assert [a.id for a in cache.put] == [sheet_without_font, font, sheet_with_font]
    assert cache.named_before_put == []
    assert cache.put[1].content_type == "font/woff2"
    assert f"/assets/{font}".encode() in cache.put[2].data
    assert len(late) == 2  # the segment named the stylesheet: each new copy wants a checkout
    # A batch naming the stylesheet lists its font too: a recording keeps both.
    [batch] = urls.rewrite([PageBatch(False, 1, 2.0, 2.0, page_json([{"href": SHEET}]))])
    assert batch.assets == (sheet_with_font, font)
    # Loaded again (another page of the site): nothing new to put.
    await capture.take(FONT, "font", b"wOF2", "font/woff2")
    assert len(cache.put) == 3 and capture.captured == 3


async def test_without_a_stream_nothing_is_captured() -> None:
    urls = AssetUrls()
    await AssetCapture(urls, lambda: None).take(IMAGE, "image", b"\x89PNG", "image/png")
    assert len(urls) == 0


def test_what_is_captured_and_the_type_it_is_served_as() -> None:
    assert wanted("image", "GET", 200, IMAGE, "1000")
    assert wanted("font", "GET", 200, FONT, None)
    assert not wanted("script", "GET", 200, "https://x.example/a.js", None)
    assert not wanted("image", "POST", 200, IMAGE, None)
    assert not wanted("image", "GET", 404, IMAGE, None)
    assert not wanted("image", "GET", 200, "data:image/png;base64,AA", None)
    assert not wanted("image", "GET", 200, IMAGE, str(64 * 2**20))
    assert served_type("image", "image/svg+xml; charset=utf-8") == "image/svg+xml"
    assert served_type("image", "text/html") == "application/octet-stream"
    assert served_type("font", "font/woff2") == "font/woff2"
    assert served_type("font", "text/javascript") == "application/octet-stream"
    assert css_text("p::before { content: 'é' }".encode("latin-1"),
                    "text/css; charset=ISO-8859-1") == "p::before { content: 'é' }"
    assert css_text("\ufeffa { b: 'é' }".encode(), "text/css") == "a { b: 'é' }"
    assert css_text(b"a {}", "text/css; charset=no-such-charset") == "a {}"
