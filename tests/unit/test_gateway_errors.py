"""Every way a viewer's socket ends after accept has a close code and a reason.

No Ray here: ViewerSockets runs against a stand-in socket and a fake registry client
whose calls fail, as a registry that went away, or broke, would.
"""

from __future__ import annotations

import json

from pipeline.config import Settings
from pipeline.errors import RegistryUnavailable
from serve.viewer_socket import ViewerSockets
from tests.unit.fake_socket import FakeSocket, NoMetrics, hello


class _Registry:
    def __init__(self, error: Exception) -> None:
        self._error = error

    async def get(self, session_id: str) -> None:
        raise self._error


async def test_a_failure_after_accept_closes_1011_with_a_reason_in_words() -> None:
    sockets = ViewerSockets(Settings(), _Registry(KeyError("x")), NoMetrics())
    socket = FakeSocket(hello())
    await sockets.live(socket, "abc")
    assert socket.closed is not None and socket.closed[0] == 1011
    assert socket.closed[1].startswith("internal error: unexpected internal error")
    assert "KeyError" not in socket.closed[1]
    error = json.loads(socket.sent[-1])
    assert error["type"] == "error" and error["code"] == 1011


async def test_a_registry_being_restarted_closes_1013_try_again() -> None:
    sockets = ViewerSockets(Settings(), _Registry(RegistryUnavailable("no answer within 5 s")),
                            NoMetrics())
    socket = FakeSocket(hello())
    await sockets.live(socket, "abc")
    assert socket.closed is not None and socket.closed[0] == 1013
    assert "registry is not answering" in socket.closed[1]
