"""The network policy's decisions, its resolvers and its settings, without a browser or
Ray: names resolve through fakes or Chromium-style rules, never the system's DNS."""

from __future__ import annotations

import ipaddress

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from pipeline.browser import launch_args
from pipeline.config import Settings
from pipeline.errors import AddressRefused
from pipeline.models import SessionSpec
from pipeline.network_policy import (
    AddressPolicy,
    CachingResolver,
    IPAddress,
    MappedResolver,
    Refusal,
    SystemResolver,
    parse_rules,
    refused_kind,
    settings_policy,
)
from serve.errors import install_error_handlers
from serve.start_urls import StartUrlCheck


class FakeResolver:
    """Answers from a dict and counts the questions; an address is itself, an unknown
    name does not resolve."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(self, host: str) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            self.asked.append(host)
            return [ipaddress.ip_address(a) for a in self.answers.get(host, [])]


REFUSED = {
    "127.0.0.1": "a loopback address",
    "127.255.0.9": "a loopback address",
    "::1": "a loopback address",
    "10.1.2.3": "a private (RFC 1918) address",
    "172.16.0.1": "a private (RFC 1918) address",
    "172.31.255.254": "a private (RFC 1918) address",
    "192.168.1.1": "a private (RFC 1918) address",
    "169.254.1.1": "a link-local address",
    "fe80::1": "a link-local address",
    "100.64.0.1": "a carrier-grade NAT (RFC 6598) address",
    "100.127.255.255": "a carrier-grade NAT (RFC 6598) address",
    "fc00::1": "a unique local (ULA) address",
    "fd12:3456::1": "a unique local (ULA) address",
    "0.0.0.0": "the unspecified address",
    "::": "the unspecified address",
    "0.1.2.3": "a 'this network' address",
    "224.0.0.1": "a multicast address",
    "239.255.255.250": "a multicast address",
    "ff02::1": "a multicast address",
    "240.0.0.1": "a reserved address",
    "255.255.255.255": "a reserved address",
    "169.254.169.254": "the cloud metadata address",
    "fd00:ec2::254": "the cloud metadata address",
    # IPv6 forms of an IPv4 address are judged by it.
    "::ffff:127.0.0.1": "a loopback address",
    "::ffff:169.254.169.254": "the cloud metadata address",
    "::ffff:10.0.0.1": "a private (RFC 1918) address",
    "2002:7f00:1::": "a loopback address",  # 6to4 of 127.0.0.1
    "64:ff9b::a00:1": "a private (RFC 1918) address",  # NAT64 of 10.0.0.1
    "192.0.2.1": "a special-purpose address that is not publicly routable",
    "2001:db8::1": "a special-purpose address that is not publicly routable",
}


@pytest.mark.parametrize(("address", "kind"), REFUSED.items())
def test_every_inside_range_is_named(address: str, kind: str) -> None:
    assert refused_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "172.32.0.1", "100.128.0.1",
                                     "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_public_addresses_pass(address: str) -> None:
    assert refused_kind(ipaddress.ip_address(address)) is None


async def test_a_refusal_names_the_url_the_address_and_the_setting() -> None:
    policy = AddressPolicy(resolver=SystemResolver())
    refusal = await policy.check("http://127.0.0.1:8265/")
    assert str(refusal) == ("http://127.0.0.1:8265/ resolves to 127.0.0.1, a loopback address; "
                            "private networks are blocked (RRSTREAM_BLOCK_PRIVATE_NETWORKS)")
    refusal = await policy.check("http://[::1]:8000/")
    assert refusal is not None and refusal.reason == "resolves to ::1, a loopback address"
    refusal = await policy.check("http://localhost:6379/")
    assert refusal is not None and "a loopback address" in refusal.reason


async def test_an_address_is_judged_itself_and_as_the_rules_map_it() -> None:
    policy = AddressPolicy(["93.184.216.34", "127.0.0.1"], MappedResolver(
        "MAP 93.184.216.34 10.0.0.1, MAP * ~NOTFOUND", FakeResolver({})))
    refusal = await policy.check("http://[::1]:8000/")
    assert refusal is not None and refusal.reason == "resolves to ::1, a loopback address"
    refusal = await policy.check("http://93.184.216.34/")
    assert refusal is not None and refusal.reason == ("resolves to 10.0.0.1, a private "
                                                      "(RFC 1918) address")
    refusal = await policy.check("http://127.0.0.1/")
    assert refusal is not None and "does not resolve" in refusal.reason


async def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    resolver = FakeResolver({"mixed.example": ["93.184.216.34", "10.0.0.5"],
                             "public.example": ["93.184.216.34", "2606:4700::1111"]})
    policy = AddressPolicy(resolver=resolver)
    refusal = await policy.check("https://mixed.example/path")
    assert refusal is not None and refusal.reason == ("resolves to 10.0.0.5, a private "
                                                      "(RFC 1918) address")
    assert await policy.check("https://public.example/") is None
    assert await policy.check("wss://public.example/socket") is None


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    refusal = await AddressPolicy(resolver=FakeResolver({})).check("http://nowhere.test/")
    assert refusal is not None and "does not resolve" in refusal.reason


@pytest.mark.parametrize("host", ["metadata.google.internal", "METADATA.google.internal.",
                                  "metadata.goog", "metadata"])
async def test_metadata_names_are_refused_before_resolution(host: str) -> None:
    resolver = FakeResolver({host.lower().rstrip("."): ["93.184.216.34"]})
    refusal = await AddressPolicy(resolver=resolver).check(f"http://{host}/computeMetadata/v1/")
    assert refusal is not None and "cloud metadata service" in refusal.reason
    assert resolver.asked == []


@pytest.mark.parametrize(("url", "allowed"), [
    ("data:text/html,<p>hi</p>", True), ("blob:https://a.example/1234", True),
    ("about:blank", True), ("file:///etc/passwd", False), ("ftp://a.example/", False),
    ("chrome://settings", False), ("http:///nohost", False),
])
async def test_schemes(url: str, allowed: bool) -> None:
    policy = AddressPolicy(resolver=FakeResolver({"a.example": ["93.184.216.34"]}))
    assert (await policy.check(url) is None) is allowed


async def test_allowed_hosts_win_by_name_pattern_address_and_network() -> None:
    resolver = FakeResolver({"intranet.example": ["10.1.2.3"], "db.corp.example": ["10.9.9.9"],
                             "other.example": ["10.1.0.7"], "wiki.example": ["10.2.0.1"]})
    policy = AddressPolicy(["intranet.example", "*.corp.example", "10.1.0.0/16", "127.0.0.5",
                            "fd00::/8"], resolver)
    for url in ("http://intranet.example/", "http://db.corp.example/", "http://other.example/",
                "http://127.0.0.5:8080/", "http://[fd00::1]/"):
        assert await policy.check(url) is None, url
    for url in ("http://wiki.example/", "http://corp.example/", "http://127.0.0.6/",
                "http://[fc00::1]/"):
        assert await policy.check(url) is not None, url


async def test_an_allowed_origin_is_its_scheme_host_and_port_only() -> None:
    policy = AddressPolicy(resolver=SystemResolver())
    policy.allow_origin("http://127.0.0.1:41234")
    policy.allow_origin("http://localhost:41235")
    assert await policy.check("http://127.0.0.1:41234/list.html?x=1") is None
    assert await policy.check("ws://127.0.0.1:41234/socket") is None
    assert await policy.check("http://localhost:41235/widget.html") is None
    assert await policy.check("http://127.0.0.1:8265/") is not None
    assert await policy.check("https://127.0.0.1:41234/") is not None


def test_rules_are_parsed_as_chromium_takes_them() -> None:
    rules = parse_rules("MAP public.test 127.0.0.9,  MAP *.inside.test 127.0.0.10:8080 ,"
                        "EXCLUDE localhost, MAP v6.test [::1], MAP * ~NOTFOUND")
    assert [(r.pattern, r.target) for r in rules] == [
        ("public.test", "127.0.0.9"), ("*.inside.test", "127.0.0.10"),
        ("localhost", None), ("v6.test", "::1"), ("*", "~NOTFOUND")]
    assert parse_rules("") == []
    for bad in ("MAP onlyone", "FORWARD a b", "EXCLUDE"):
        with pytest.raises(ValueError, match="is not `MAP"):
            parse_rules(bad)


async def test_mapped_resolver_follows_the_rules_and_never_asks_dns() -> None:
    fallback = FakeResolver({"localhost": ["127.0.0.1"], "alias.test": ["127.0.0.11"]})
    resolver = MappedResolver("MAP public.test 127.0.0.9, MAP *.inside.test 127.0.0.10:81, "
                              "MAP v6.test [::1], MAP other.test alias.test, "
                              "MAP * ~NOTFOUND, EXCLUDE localhost", fallback)
    assert await resolver.resolve("PUBLIC.test.") == [ipaddress.ip_address("127.0.0.9")]
    assert await resolver.resolve("a.inside.test") == [ipaddress.ip_address("127.0.0.10")]
    assert await resolver.resolve("v6.test") == [ipaddress.ip_address("::1")]
    assert await resolver.resolve("other.test") == [ipaddress.ip_address("127.0.0.11")]
    assert await resolver.resolve("example.com") == []
    assert await resolver.resolve("8.8.8.8") == [], "patterns match addresses too"
    # An EXCLUDE wins over an earlier MAP * (as in Chromium): the fallback answers.
    assert await resolver.resolve("localhost") == [ipaddress.ip_address("127.0.0.1")]
    assert fallback.asked == ["alias.test", "localhost"]


async def test_system_resolver_answers_addresses_and_localhost_itself() -> None:
    resolver = SystemResolver()
    assert await resolver.resolve("10.0.0.1") == [ipaddress.ip_address("10.0.0.1")]
    assert await resolver.resolve("fe80::1") == [ipaddress.ip_address("fe80::1")]
    assert {str(a) for a in await resolver.resolve("app.localhost")} == {"127.0.0.1", "::1"}


async def test_answers_are_cached_for_their_ttl() -> None:
    fake = FakeResolver({"a.test": ["93.184.216.34"]})
    cached = CachingResolver(fake, ttl_s=60)
    for _ in range(3):
        assert await cached.resolve("a.test") == [ipaddress.ip_address("93.184.216.34")]
    assert fake.asked == ["a.test"]
    expired = CachingResolver(fake, ttl_s=0)
    await expired.resolve("a.test")
    await expired.resolve("a.test")
    assert fake.asked == ["a.test"] * 3


def test_the_block_follows_the_bind_address_unless_set() -> None:
    assert not Settings().private_networks_blocked
    assert not Settings(host="::1").private_networks_blocked
    assert Settings(host="0.0.0.0").private_networks_blocked
    assert Settings(host="10.0.0.4").private_networks_blocked
    assert Settings(host="rrstream.example").private_networks_blocked
    assert not Settings(host="0.0.0.0", block_private_networks=False).private_networks_blocked
    assert Settings(block_private_networks=True).private_networks_blocked
    assert settings_policy(Settings()) is None
    assert isinstance(settings_policy(Settings(block_private_networks=True)), AddressPolicy)


def test_allowed_hosts_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RRSTREAM_ALLOWED_HOSTS", "intranet.example, 10.1.0.0/16")
    assert Settings().allowed_hosts == ["intranet.example", "10.1.0.0/16"]


def test_the_block_follows_auth_unless_set() -> None:
    assert not Settings().private_networks_blocked
    assert Settings(auth="required").private_networks_blocked
    assert Settings(host="0.0.0.0").private_networks_blocked
    assert not Settings(host="0.0.0.0", block_private_networks=False).private_networks_blocked
    assert Settings(block_private_networks=True).private_networks_blocked


def test_with_the_block_on_chromium_sends_no_webrtc_udp() -> None:
    policy = "--webrtc-ip-handling-policy=disable_non_proxied_udp"
    assert policy in launch_args(Settings(block_private_networks=True))
    assert policy in launch_args(Settings(host="0.0.0.0"))  # auth required: block on
    assert policy not in launch_args(Settings())


def test_the_rules_go_to_chromium_and_bad_rules_are_refused() -> None:
    rules = "MAP public.test 127.0.0.9, MAP * ~NOTFOUND"
    assert f"--host-resolver-rules={rules}" in launch_args(Settings(host_resolver_rules=rules))
    assert not any(a.startswith("--host-resolver-rules") for a in launch_args(Settings()))
    with pytest.raises(ValidationError, match="host_resolver_rules"):
        Settings(host_resolver_rules="MAP nothing")


async def test_a_refused_start_url_is_a_422_naming_the_address() -> None:
    """The gateway's check, on an app of its own with the API's error handlers."""
    check = StartUrlCheck(Settings(block_private_networks=True,
                                   host_resolver_rules="MAP public.test 93.184.216.34, "
                                   "MAP inside.test 10.0.0.5, MAP * ~NOTFOUND"))
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/sessions")
    async def create(spec: SessionSpec) -> dict[str, bool]:
        await check.check(spec)
        return {"ok": True}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                 base_url="http://api.test") as client:
        refused = await client.post("/sessions", json={"url": "http://inside.test:8080/"})
        assert refused.status_code == 422
        assert refused.json()["message"] == (
            "http://inside.test:8080/ resolves to 10.0.0.5, a private (RFC 1918) address; "
            "private networks are blocked (RRSTREAM_BLOCK_PRIVATE_NETWORKS)")
        allowed = await client.post("/sessions", json={"url": "http://public.test/"})
        assert allowed.json() == {"ok": True}
        assert (await client.post("/sessions", json={"demo": True})).status_code == 200


def test_the_refusal_survives_the_trip_between_processes() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(AddressRefused("http://10.0.0.1/", "resolves to x")))
    assert (error.url, error.reason) == ("http://10.0.0.1/", "resolves to x")
    assert str(error).endswith("private networks are blocked (RRSTREAM_BLOCK_PRIVATE_NETWORKS)")


async def test_admit_gives_the_checked_addresses_to_connect_to() -> None:
    resolver = FakeResolver({"public.example": ["93.184.216.34", "2606:4700::1111"],
                             "intranet.example": ["10.0.0.7"]})
    policy = AddressPolicy(["intranet.example"], resolver)
    policy.allow_origin("http://127.0.0.1:8000")
    admitted = await policy.admit("https://public.example/path")
    assert not isinstance(admitted, Refusal)
    assert [str(a) for a in admitted.addresses] == ["93.184.216.34", "2606:4700::1111"]
    # An allowed name is resolved too: a proxy needs somewhere to connect.
    admitted = await policy.admit("http://intranet.example/")
    assert not isinstance(admitted, Refusal) and [str(a) for a in admitted.addresses] == [
        "10.0.0.7"]
    refusal = await policy.admit("http://[::1]/")
    assert isinstance(refusal, Refusal) and refusal.reason == "resolves to ::1, a loopback address"
    # A tunnel's scheme is unknown: an allowed origin's host and port let it through.
    assert isinstance(await policy.admit("https://127.0.0.1:8000/"), Refusal)
    admitted = await policy.admit("https://127.0.0.1:8000/", tunnel=True)
    assert not isinstance(admitted, Refusal) and [str(a) for a in admitted.addresses] == [
        "127.0.0.1"]
    assert isinstance(await policy.admit("https://127.0.0.1:8001/", tunnel=True), Refusal)
