from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from pipeline.demo_site import DemoSite, DemoSiteState
from pipeline.errors import InvalidTransition

PAGES = ["index.html", "form.html", "list.html", "about.html", "widget.html"]
ASSETS = {
    "style.css": "text/css",
    "form.js": "javascript",
    "list.js": "javascript",
    "widget.js": "javascript",
}


def _listening_addresses(ports: set[int]) -> set[tuple[str, int]]:
    return {
        (conn.laddr.ip, conn.laddr.port)
        for conn in psutil.Process().net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports
    }


async def test_serves_every_page_on_both_origins() -> None:
    async with DemoSite() as site, httpx.AsyncClient(timeout=5) as client:
        assert site.state is DemoSiteState.RUNNING
        for origin in (site.url, site.widget_url):
            for page in PAGES:
                response = await client.get(f"{origin}/{page}")
                assert response.status_code == 200, (origin, page)
                assert response.headers["content-type"].startswith("text/html")
                assert response.headers["cache-control"] == "no-store"
                assert "__WIDGET_ORIGIN__" not in response.text
                assert "__SITE_ORIGIN__" not in response.text
            for asset, media_type in ASSETS.items():
                response = await client.get(f"{origin}/{asset}")
                assert response.status_code == 200, (origin, asset)
                assert media_type in response.headers["content-type"]
                assert response.headers["cache-control"] == "no-store"
            root = await client.get(f"{origin}/")
            assert root.status_code == 200
            assert 'id="widget"' in root.text


async def test_substitutes_both_origins() -> None:
    async with DemoSite() as site, httpx.AsyncClient(timeout=5) as client:
        home = (await client.get(f"{site.url}/index.html")).text
        assert f'src="{site.widget_url}/widget.html"' in home
        assert f"Served from {site.url}" in home
        widget = (await client.get(f"{site.widget_url}/widget.html")).text
        assert f'id="widget-origin">{site.widget_url}<' in widget


async def test_origins_are_cross_site_loopback_urls() -> None:
    async with DemoSite() as site:
        main, widget = urlsplit(site.url), urlsplit(site.widget_url)
        assert (main.scheme, main.hostname) == ("http", "127.0.0.1")
        assert (widget.scheme, widget.hostname) == ("http", "localhost")
        assert main.port != widget.port
        assert not site.url.endswith("/") and not site.widget_url.endswith("/")


async def test_binds_loopback_only() -> None:
    async with DemoSite() as site:
        ports = {urlsplit(site.url).port or 0, urlsplit(site.widget_url).port or 0}
        assert _listening_addresses(ports) == {("127.0.0.1", port) for port in ports}


async def test_unknown_paths_are_not_found() -> None:
    async with DemoSite() as site, httpx.AsyncClient(timeout=5) as client:
        for path in ("/missing.html", "/../pyproject.toml", "/%2e%2e/demo_site.py"):
            response = await client.get(site.url + path)
            assert response.status_code == 404, path
            assert response.headers["cache-control"] == "no-store"


async def test_stop_releases_the_ports() -> None:
    site = DemoSite()
    await site.start()
    ports = {urlsplit(site.url).port or 0, urlsplit(site.widget_url).port or 0}
    await site.stop()
    assert site.state is DemoSiteState.STOPPED
    assert _listening_addresses(ports) == set()
    async with httpx.AsyncClient(timeout=2) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{site.url}/index.html")
    await site.stop()  # stopping twice is harmless


async def test_stop_closes_open_keep_alive_connections() -> None:
    site = DemoSite(shutdown_timeout=2)
    await site.start()
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"{site.url}/index.html")).status_code == 200
        await site.stop()
    assert site.state is DemoSiteState.STOPPED


async def test_illegal_transitions_raise() -> None:
    site = DemoSite()
    with pytest.raises(RuntimeError):
        _ = site.url
    await site.start()
    try:
        with pytest.raises(InvalidTransition, match="'running' to 'starting'"):
            await site.start()
    finally:
        await site.stop()
    with pytest.raises(InvalidTransition, match="'stopped' to 'starting'"):
        await site.start()


async def test_stopping_a_site_never_started_ends_it() -> None:
    site = DemoSite()
    await site.stop()
    assert site.state is DemoSiteState.STOPPED
    with pytest.raises(InvalidTransition):
        await site.start()
