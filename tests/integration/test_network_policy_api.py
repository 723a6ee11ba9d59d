"""The network policy through the real API: a second gateway with the block on, in the
test session's Ray (its own namespace, so its own registry, streamer and Chromium, which
gets the test's resolver rules), on loopback only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import ray
from ray import serve

from pipeline.actors import REGISTRY_NAME
from serve.app import build_app
from tests.conftest import Stack, wait_for_state
from tests.integration.network_site import PUBLIC_IP, RULES, NetworkSite, serve_network_site

pytestmark = pytest.mark.integration
_APP, _PREFIX, _NAMESPACE = "rrstream-net", "/net", "rrstream-net"


@pytest.fixture(scope="module")
def site() -> Iterator[NetworkSite]:
    with serve_network_site() as served:
        yield served


@pytest.fixture(scope="module")
def blocking_gateway(stack: Stack) -> Iterator[str]:
    # auth off (build_app requires it by default): this gateway tests the network policy.
    serve.run(build_app({"namespace": _NAMESPACE, "auth": "off", "block_private_networks": True,
                         "allowed_hosts": [PUBLIC_IP], "host_resolver_rules": RULES,
                         "warm_browsers": 0, "navigation_timeout_s": 10}),
              name=_APP, route_prefix=_PREFIX)
    try:
        yield f"{stack.base_url}{_PREFIX}"
    finally:
        try:
            registry = ray.get_actor(REGISTRY_NAME, namespace=_NAMESPACE)
            ray.get(registry.shutdown.remote(), timeout=30)
            ray.kill(registry)
        finally:
            serve.delete(_APP)


@pytest.fixture
async def api(blocking_gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=blocking_gateway, timeout=60) as client:
        yield client


@pytest.mark.parametrize(("url", "words"), [
    ("http://127.0.0.1:8265/", "resolves to 127.0.0.1, a loopback address"),
    ("http://[::1]:8000/", "resolves to ::1, a loopback address"),
    ("http://localhost:6379/", "resolves to 127.0.0.1, a loopback address"),
    ("http://169.254.169.254/latest/meta-data/",
     "resolves to 169.254.169.254, the cloud metadata address"),
    ("http://inside.test/", "resolves to 127.0.0.10, a loopback address"),
    ("http://metadata.google.internal/",
     "names the cloud metadata service (metadata.google.internal)"),
])
async def test_a_start_url_on_an_inside_address_is_422(api: httpx.AsyncClient, url: str,
                                                         words: str) -> None:
    response = await api.post("/sessions", json={"url": url})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["message"] == (f"{url} {words}; private networks are blocked "
                               "(RRSTREAM_BLOCK_PRIVATE_NETWORKS)"), body
    assert body["detail"] == body["message"]
    created = (await api.get("/sessions")).json()
    assert url not in {s["start_url"] for s in created}, "a session was created"


async def test_a_redirect_to_an_inside_address_is_a_navigation_error(
        api: httpx.AsyncClient, site: NetworkSite) -> None:
    start = site.public("/to-inside")
    response = await api.post("/sessions", json={"url": start, "steps": [
        {"action": "goto", "url": site.public("/page")},
        {"action": "wait_for", "selector": "#fetch:not(:text('pending'))"}]})
    assert response.status_code == 201, response.text
    sid = response.json()["id"]
    try:
        info = await wait_for_state(api, sid, {"idle", "failed"})
        assert info["state"] == "idle" and [s["state"] for s in info["steps"]] == ["done"] * 2
        blocked = [w for w in info["warnings"] if w["kind"] == "blocked_request"]
        assert {w["url"] for w in blocked} >= {site.inside("/secret"), site.inside("/data")}
        assert info["blocked_requests"] >= len(blocked)
        navigation = [w["message"] for w in info["warnings"] if w["kind"] == "navigation"]
        assert navigation == [f"could not open {start}: it redirected to "
                              f"{site.inside('/secret')}, which resolves to 127.0.0.10, a "
                              "loopback address; private networks are blocked "
                              "(RRSTREAM_BLOCK_PRIVATE_NETWORKS)"], info["warnings"]
        assert site.inside_hits() == []
    finally:
        await api.delete(f"/sessions/{sid}")
