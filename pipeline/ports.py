"""Free TCP ports for listeners that bind later (Serve's HTTP port, HAProxy's metrics and
stats frontends, test servers).

A port the kernel hands out for `bind(0)` comes from its ephemeral range, the same range
every outgoing connection's local port comes from. Between choosing such a port and
binding it, a Ray worker or raylet connecting somewhere can take it: CI saw HAProxy's
metrics frontend fail "Address already in use" on a port chosen this way while a test
cluster was starting. Ports are therefore chosen below the ephemeral range and above
Ray's worker ports (10002-19999 by default), where only an explicit bind can land.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_LOWEST = 20000  # above Ray's default worker port range
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    # On every address: HAProxy's frontends listen on 0.0.0.0.
    with socket.socket() as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on, outside the ephemeral range when the range leaves room,
    and never the same one twice in this process."""
    top = _ephemeral_start()
    if top - _LOWEST >= 1000:
        for _ in range(200):
            port = random.randrange(_LOWEST, top)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    _handed_out.add(port)
    return port
