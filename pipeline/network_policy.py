"""Which hosts a session's browser may reach: the decision, and the name resolution it
rests on, with no Ray and no browser in sight.

With RRSTREAM_BLOCK_PRIVATE_NETWORKS a session refuses every address inside a cluster
(loopback, private, link-local, carrier-grade NAT, unique local, metadata, multicast and
other special-purpose ranges) after resolving the host, unless RRSTREAM_ALLOWED_HOSTS
names it; the session's own demo site is always allowed. `pipeline/network_guard.py`
applies the decision to every request of the browser; the gateway to the start URL.

Names are resolved by a `Resolver`: the system's, or, where RRSTREAM_HOST_RESOLVER_RULES
is set, a `MappedResolver` that reads the same rules Chromium gets as
`--host-resolver-rules`, so the check and the browser agree on what a name is (and tests
never ask the system's DNS). A name that does not resolve is refused: it cannot be
checked, and Chromium could not open it either.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from pipeline.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

BLOCKED = "private networks are blocked (RRSTREAM_BLOCK_PRIVATE_NETWORKS)"
_PASS_SCHEMES = frozenset({"data", "blob", "about"})  # no network behind them
_CHECKED_SCHEMES = frozenset({"http", "https", "ws", "wss"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# Metadata services answer to these names too; refused before any resolution.
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata",
                            "instance-data", "instance-data.ec2.internal"})

# The refused networks and what each is called, most specific first.
_NETWORKS: list[tuple[IPNetwork, str]] = [(ipaddress.ip_network(net), words) for net, words in (
    ("169.254.169.254/32", "the cloud metadata address"),
    ("fd00:ec2::254/128", "the cloud metadata address"),
    ("0.0.0.0/32", "the unspecified address"),
    ("::/128", "the unspecified address"),
    ("127.0.0.0/8", "a loopback address"),
    ("::1/128", "a loopback address"),
    ("10.0.0.0/8", "a private (RFC 1918) address"),
    ("172.16.0.0/12", "a private (RFC 1918) address"),
    ("192.168.0.0/16", "a private (RFC 1918) address"),
    ("100.64.0.0/10", "a carrier-grade NAT (RFC 6598) address"),
    ("169.254.0.0/16", "a link-local address"),
    ("fe80::/10", "a link-local address"),
    ("fc00::/7", "a unique local (ULA) address"),
    ("224.0.0.0/4", "a multicast address"),
    ("ff00::/8", "a multicast address"),
    ("0.0.0.0/8", "a 'this network' address"),
    ("240.0.0.0/4", "a reserved address"),
)]


class Resolver(Protocol):
    """Resolves a host to its addresses; an empty list: it does not resolve. An address
    resolves to itself (unless rules map it, as Chromium's may)."""

    async def resolve(self, host: str) -> list[IPAddress]: ...


class SystemResolver:
    """The system's resolver (getaddrinfo), off the event loop. An address resolves to
    itself and `localhost` names to loopback, without asking anyone (as Chromium does)."""

    async def resolve(self, host: str) -> list[IPAddress]:
        literal = _ip(host)
        if literal is not None:
            return [literal]
        if host == "localhost" or host.endswith(".localhost"):
            return [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, None, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            return []
        # The scope of a link-local IPv6 address ("fe80::1%eth0") is no part of its range.
        return _unique(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: str
    target: str | None  # None: EXCLUDE (the fallback resolves it); "~NOTFOUND": no address


class MappedResolver:
    """Chromium's `--host-resolver-rules` in Python: `MAP pattern target` (target an
    address, another host name, or `~NOTFOUND`) and `EXCLUDE pattern`, separated by
    commas. As in Chromium, patterns match addresses too, an EXCLUDE wins over every MAP,
    and the first MAP that matches decides; a host no rule maps goes to `fallback`."""

    def __init__(self, rules: str, fallback: Resolver | None = None) -> None:
        self.rules = parse_rules(rules)
        self._fallback = fallback or SystemResolver()

    async def resolve(self, host: str) -> list[IPAddress]:
        host = host.lower().rstrip(".").strip("[]")
        matching = [r for r in self.rules if fnmatch.fnmatchcase(host, r.pattern)]
        if any(rule.target is None for rule in matching):
            matching = []
        for rule in matching:
            assert rule.target is not None
            if rule.target == "~NOTFOUND":
                return []
            literal = _ip(rule.target)
            # Chromium resolves a replacement name as it is, without the rules.
            return [literal] if literal is not None else await self._fallback.resolve(rule.target)
        return await self._fallback.resolve(host)


def parse_rules(text: str) -> list[_Rule]:
    """Chromium's rules text, checked: a rule it would not take raises ValueError."""
    rules: list[_Rule] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        words = part.split()
        kind = words[0].upper()
        if kind == "MAP" and len(words) == 3:
            target = words[2].strip("[]").lower()
            if target != "~notfound" and ":" in target and _ip(target) is None:
                target = target.rsplit(":", 1)[0]  # a replacement port: Chromium's business
            rules.append(_Rule(words[1].lower(), "~NOTFOUND" if target == "~notfound"
                               else target))
        elif kind == "EXCLUDE" and len(words) == 2:
            rules.append(_Rule(words[1].lower(), None))
        else:
            raise ValueError(f"host resolver rule {part!r} is not `MAP <pattern> <target>` "
                             "or `EXCLUDE <pattern>`")
    return rules


class CachingResolver:
    """Keeps each answer of `resolver` for `ttl_s`: a page asks for the same few hosts
    hundreds of times."""

    def __init__(self, resolver: Resolver, ttl_s: float = 5.0) -> None:
        self._resolver, self._ttl_s = resolver, ttl_s
        self._answers: dict[str, tuple[float, list[IPAddress]]] = {}

    async def resolve(self, host: str) -> list[IPAddress]:
        now = time.monotonic()
        cached = self._answers.get(host)
        if cached is not None and cached[0] > now:
            return cached[1]
        addresses = await self._resolver.resolve(host)
        if len(self._answers) > 1_000:
            self._answers = {h: a for h, a in self._answers.items() if a[0] > now}
        self._answers[host] = (now + self._ttl_s, addresses)
        return addresses


@dataclass(frozen=True, slots=True)
class Admission:
    """A URL the policy lets through, and the addresses its host was checked at."""

    url: str
    host: str
    addresses: list[IPAddress]  # in the resolver's order; empty: it did not resolve


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a URL may not be opened, in words."""

    url: str
    host: str
    reason: str  # e.g. "resolves to 127.0.0.1, a loopback address"

    def __str__(self) -> str:
        return f"{self.url} {self.reason}; {BLOCKED}"


def refused_kind(address: IPAddress) -> str | None:
    """What kind of inside address `address` is (e.g. "a loopback address"), or None for
    a public one. IPv6 forms that carry an IPv4 address (mapped, 6to4, NAT64) are judged
    by that address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
        if embedded is not None:
            return refused_kind(embedded)
    for network, words in _NETWORKS:
        if address.version == network.version and address in network:
            return words
    if not address.is_global:
        return "a special-purpose address that is not publicly routable"
    return None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressPolicy:
    """Decides whether a URL may be opened. `allowed` entries (host names, `*.suffix`
    patterns, addresses, networks) always win; so do the origins given to `allow_origin`
    (the session's demo site)."""

    def __init__(self, allowed: Iterable[str] = (), resolver: Resolver | None = None) -> None:
        self.resolver: Resolver = resolver or SystemResolver()
        self._names: list[str] = []
        self._networks: list[IPNetwork] = []
        for entry in (e.strip().lower() for e in allowed):
            if not entry:
                continue
            try:
                self._networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self._names.append(entry.rstrip("."))
        self._origins: set[tuple[str, str, int]] = set()

    def allow_origin(self, url: str) -> None:
        """Everything under `url`'s scheme, host and port is allowed."""
        self._origins.add(_origin(url))

    async def check(self, url: str) -> Refusal | None:
        """None if `url` may be opened, else why not."""
        verdict = await self._judge(url, tunnel=False, connecting=False)
        return verdict if isinstance(verdict, Refusal) else None

    async def admit(self, url: str, *, tunnel: bool = False) -> Admission | Refusal:
        """The addresses `url`'s host may be reached at, every one of them checked, or why
        not: a caller connects to these, never to the name, so a resolver that answers
        differently next time (DNS rebinding) cannot lead it elsewhere. An allowed host is
        resolved too, and may have no address. `tunnel`: a CONNECT to `url`'s host and
        port, whose scheme nobody knows; an allowed origin on them lets it through."""
        verdict = await self._judge(url, tunnel=tunnel, connecting=True)
        assert verdict is not None
        return verdict

    async def _judge(self, url: str, *, tunnel: bool,
                     connecting: bool) -> Admission | Refusal | None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in _PASS_SCHEMES:
            return Admission(url, "", [])
        if scheme not in _CHECKED_SCHEMES:
            return Refusal(url, "", f"is a {scheme or 'scheme-less'} URL, not a web address")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            return Refusal(url, host, "has no host")
        if self._origin_allowed(url, tunnel) or self._name_allowed(host):
            if not connecting:
                return None
            return Admission(url, host, await self.resolver.resolve(host))
        if host in METADATA_NAMES:
            return Refusal(url, host, f"names the cloud metadata service ({host})")
        # An address is judged as it is, and then as the resolver has it: Chromium's rules
        # may map it elsewhere.
        literal = _ip(host)
        resolved = await self.resolver.resolve(host)
        for address in _unique([*([literal] if literal is not None else []), *resolved]):
            kind = refused_kind(address)
            if kind is not None and not any(address in n for n in self._networks
                                            if n.version == address.version):
                return Refusal(url, host, f"resolves to {address}, {kind}")
        if not resolved:
            return Refusal(url, host, f"names {host}, which does not resolve (an address "
                           "that cannot be checked is refused)")
        return Admission(url, host, _unique(resolved))

    def _origin_allowed(self, url: str, tunnel: bool) -> bool:
        origin = _origin(url)
        if not tunnel:
            return origin in self._origins
        return any(o[1:] == origin[1:] for o in self._origins)

    def _name_allowed(self, host: str) -> bool:
        return any(host == name or (name.startswith("*.") and host.endswith(name[1:]))
                   for name in self._names)


def settings_policy(settings: Settings) -> AddressPolicy | None:
    """The policy `settings` ask for (RRSTREAM_ALLOWED_HOSTS, resolved by
    RRSTREAM_HOST_RESOLVER_RULES's rules where set), or None when nothing is blocked."""
    if not settings.private_networks_blocked:
        return None
    rules = settings.host_resolver_rules
    resolver = MappedResolver(rules) if rules.strip() else SystemResolver()
    return AddressPolicy(settings.allowed_hosts, CachingResolver(resolver))


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)  # a page's own socket
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 0)


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _unique(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    return list(dict.fromkeys(addresses))


__all__ = ["BLOCKED", "METADATA_NAMES", "AddressPolicy", "Admission", "CachingResolver",
           "MappedResolver", "Refusal", "Resolver", "SystemResolver", "parse_rules", "refused_kind",
           "settings_policy"]
