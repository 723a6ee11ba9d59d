"""A Redis of a test's own, for the GCS fault-tolerance tests: Debian's `redis-server`
(scripts/setup.sh installs it with RRSTREAM_SETUP_TESTS=1) bound to 127.0.0.1, with no
persistence (nothing written to disk), killed when the test is done."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

_START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int

    @property
    def address(self) -> str:
        """What RAY_REDIS_ADDRESS takes."""
        return f"{self.host}:{self.port}"

    def command(self, *words: str) -> bytes:
        """One command in Redis's inline protocol; the raw reply (e.g. b"+PONG\\r\\n")."""
        with socket.create_connection((self.host, self.port), timeout=5) as sock:
            sock.sendall(" ".join(words).encode() + b"\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
            return reply

    def keys(self, pattern: str = "*") -> int:
        """How many keys match `pattern` (Ray keeps each GCS table in one hash)."""
        reply = self.command("KEYS", pattern)
        return int(reply.split(b"\r\n", 1)[0].lstrip(b"*"))


def missing() -> str | None:
    """Why a test cannot start a Redis here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server not installed (RRSTREAM_SETUP_TESTS=1 bash scripts/setup.sh)"
    return None


@contextlib.contextmanager
def redis_server(port: int | None = None) -> Iterator[RedisServer]:
    """Runs `redis-server` on 127.0.0.1:`port` (a free one by default) until the block
    ends; its working directory is a temporary one, removed afterwards."""
    server = RedisServer("127.0.0.1", port or free_port())
    workdir = Path(tempfile.mkdtemp(prefix="rrstream-redis-"))
    log = workdir / "redis.log"
    process = subprocess.Popen(
        ["redis-server", "--bind", server.host, "--port", str(server.port),
         "--save", "", "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no",
         "--protected-mode", "yes", "--loglevel", "warning", "--logfile", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                output = log.read_text() if log.exists() else ""
                raise RuntimeError(f"redis-server exited with {process.returncode}: {output}")
            try:
                if server.command("PING").startswith(b"+PONG"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on {server.address} within "
                                   f"{_START_TIMEOUT_S:g} s")
            time.sleep(0.05)
        yield server
    finally:
        process.kill()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


__all__ = ["RedisServer", "missing", "redis_server"]
