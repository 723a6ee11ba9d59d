"""Ports chosen for listeners that bind later stay out of the kernel's ephemeral range."""

from __future__ import annotations

import socket

import pytest

from pipeline import ports


def test_ports_are_below_the_ephemeral_range_above_rays_workers_and_never_repeat() -> None:
    start = ports._ephemeral_start()
    chosen = [ports.free_port() for _ in range(50)]
    assert len(set(chosen)) == len(chosen)
    if start - 20000 >= 1000:
        assert all(20000 <= port < start for port in chosen), chosen


def test_a_port_something_listens_on_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        other = ports.free_port()
        offers = iter([busy, other])
        monkeypatch.setattr(ports, "_ephemeral_start", lambda: 65535)
        monkeypatch.setattr(ports.random, "randrange", lambda _low, _high: next(offers))
        ports._handed_out.discard(other)
        assert ports.free_port() == other
