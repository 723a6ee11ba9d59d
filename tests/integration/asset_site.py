"""A page whose styles, font and image a viewer could not fetch itself, for the asset
cache's tests: the page on 127.0.0.1, a cross-origin stylesheet with a web font on
127.0.0.3 (another origin, still loopback), and an image on the page's own origin that
answers only with the cookie the page's response set. Under `/pixels/`, one page for each
of the three whose picture depends on it, for the pixel test (tests/e2e/test_pixels.py):
a large area styled only by the cross-origin sheet, text in a cross-origin web font
whose one glyph is a solid box, and the cookie-bound image shown large.

Everything is on loopback and on ports from pipeline/ports.py; each request is logged
with the address that served it.
"""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import uvicorn
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.ports import free_port
from tests.integration.threaded_server import serving

PAGE_IP, CDN_IP = "127.0.0.1", "127.0.0.3"
COOKIE = ("pass", "open-sesame")
# Not a font a browser can use (it starts like a WOFF2 file): these tests compare bytes,
# the pixel tests compare glyphs.
FONT = b"wOF2" + bytes(range(256)) * 4


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A PNG of one colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


IMAGE_RGB = (200, 30, 90)
IMAGE = png(16, 8, IMAGE_RGB)


def block_font() -> bytes:
    """A TrueType font named Block whose one glyph, "x", is a solid box a whole em wide:
    text in it is a solid bar, text in any fallback font is not (the pixel test's font)."""
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder([".notdef", "x"])
    builder.setupCharacterMap({ord("x"): "x"})
    box = TTGlyphPen(None)
    box.moveTo((0, -200))
    box.lineTo((0, 800))
    box.lineTo((1000, 800))
    box.lineTo((1000, -200))
    box.closePath()
    builder.setupGlyf({".notdef": TTGlyphPen(None).glyph(), "x": box.glyph()})
    builder.setupHorizontalMetrics({".notdef": (500, 0), "x": (1000, 0)})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": "Block", "styleName": "Regular"})
    builder.setupOS2(sTypoAscender=800, sTypoDescender=-200, usWinAscent=800,
                     usWinDescent=200)
    builder.setupPost()
    out = io.BytesIO()
    builder.save(out)
    return out.getvalue()


BLOCK_FONT = block_font()
# The /pixels/ pages: name -> (the cross-origin sheet it links or None, its body).
PIXEL_PAGES = {
    "style.html": ("/css/pixels.css", '<div id="art"></div>'),
    "font.html": ("/css/block.css", '<p id="art">xxxxxx<br>xxxxxx</p>'),
    "image.html": (None, '<img id="art" src="/secret.png" width="1200" height="600" alt="">'),
}
PIXEL_SHEETS = {
    "/css/pixels.css": b"#art { width: 1100px; height: 520px; margin: 40px;"
                       b" background: rgb(20, 160, 90); border: 40px solid rgb(250, 200, 20); }\n",
    "/css/block.css": b'@font-face { font-family: "Block"; src: url("../fonts/block.ttf")'
                      b' format("truetype"); font-display: block; }\n'
                      b'#art { font: 180px/1 "Block", serif; margin: 40px;'
                      b" color: rgb(30, 30, 160); }\n",
}


@dataclass
class AssetSite:
    page_port: int
    cdn_port: int
    hits: list[tuple[str, str, bool]] = field(default_factory=list)  # (address, path, cookie)

    @property
    def page_url(self) -> str:
        return f"http://{PAGE_IP}:{self.page_port}/"

    @property
    def image_url(self) -> str:
        return f"http://{PAGE_IP}:{self.page_port}/secret.png"

    @property
    def sheet_url(self) -> str:
        return f"http://{CDN_IP}:{self.cdn_port}/css/site.css"

    @property
    def font_url(self) -> str:
        return f"http://{CDN_IP}:{self.cdn_port}/fonts/test.woff2"

    @property
    def sheet(self) -> bytes:
        """The stylesheet as the CDN serves it: its font named relative to it."""
        return (b'@font-face { font-family: "Test Face"; src: url("../fonts/test.woff2") '
                b'format("woff2"); }\n'
                b'.fancy { font-family: "Test Face", serif; color: rgb(10, 120, 200); '
                b"font-size: 40px; }\n")


def _app(site: AssetSite) -> ASGIApp:
    def page(_: Request) -> Response:
        response = HTMLResponse(
            "<!doctype html><html><head><title>assets</title>"
            f'<link rel="stylesheet" href="{site.sheet_url}"></head><body>'
            '<p class="fancy" id="fancy">Styled from another origin</p>'
            f'<img id="secret" src="/secret.png" width="16" height="8" alt="secret">'
            "</body></html>", headers={"Cache-Control": "no-store"})
        response.set_cookie(*COOKIE, httponly=True, samesite="lax")
        return response

    def secret(request: Request) -> Response:
        if request.cookies.get(COOKIE[0]) != COOKIE[1]:
            return Response(b"no cookie, no picture", 403, media_type="text/plain")
        return Response(IMAGE, media_type="image/png")

    def pixel_page(request: Request) -> Response:
        if request.path_params["name"] not in PIXEL_PAGES:
            return Response(b"no such page", 404, media_type="text/plain")
        sheet, body = PIXEL_PAGES[request.path_params["name"]]
        link = (f'<link rel="stylesheet" href="http://{CDN_IP}:{site.cdn_port}{sheet}">'
                if sheet else "")
        response = HTMLResponse(
            f"<!doctype html><html><head><title>pixels</title>{link}"
            "<style>html, body { margin: 0; background: #fff; }</style></head>"
            f'<body>{body}<p id="state">drawn</p></body></html>',
            headers={"Cache-Control": "no-store"})
        response.set_cookie(*COOKIE, httponly=True, samesite="lax")
        return response

    cors = {"Access-Control-Allow-Origin": "*"}

    def pixel_sheet(request: Request) -> Response:
        return Response(PIXEL_SHEETS[request.url.path], media_type="text/css", headers=cors)

    app = Starlette(routes=[
        Route("/pixels/{name}", pixel_page),
        *(Route(path, pixel_sheet) for path in PIXEL_SHEETS),
        Route("/fonts/block.ttf", lambda _: Response(BLOCK_FONT, media_type="font/ttf",
                                                     headers=cors)),
        Route("/", page), Route("/secret.png", secret),
        Route("/css/site.css", lambda _: Response(site.sheet, media_type="text/css",
                                                  headers=cors)),
        Route("/fonts/test.woff2", lambda _: Response(FONT, media_type="font/woff2",
                                                      headers=cors)),
    ])

    async def logged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            site.hits.append((scope["server"][0], scope["path"],
                              COOKIE[0].encode() in headers.get(b"cookie", b"")))
        await app(scope, receive, send)

    return logged


@contextlib.contextmanager
def serve_asset_site() -> Iterator[AssetSite]:
    """Serves the page on PAGE_IP and the stylesheet and font on CDN_IP."""
    sockets = [socket.socket(), socket.socket()]
    try:
        site = AssetSite(free_port(), free_port())
        sockets[0].bind((PAGE_IP, site.page_port))
        sockets[1].bind((CDN_IP, site.cdn_port))
        server = uvicorn.Server(uvicorn.Config(_app(site), log_level="warning",
                                               lifespan="off"))
        with serving(server, "asset-site", sockets):
            yield site
    finally:
        for sock in sockets:
            sock.close()
