"""rrstream's exceptions. Foreign errors (Playwright, OSError) are translated at the boundary.

RRStreamError
 ├── SessionNotFound
 ├── RegistryUnavailable
 ├── ActorLost
 ├── SessionLost
 ├── StreamUnavailable
 ├── RecordingNotFound
 ├── RecordingInProgress
 ├── RecordingStoreError
 ├── AssetNotFound
 ├── PoolFull
 ├── InvalidTransition
 ├── ControlRefused
 ├── TakeoverRefused
 ├── BrowserNotFound
 ├── BrowserLaunchError
 ├── NavigationFailed
 ├── AddressRefused
 └── StepFailed
"""

from __future__ import annotations

import sys


class RRStreamError(Exception):
    """Root of every error rrstream raises on purpose."""

    def __new__(cls, *args: object) -> RRStreamError:
        error = super().__new__(cls, *args)
        error._init_args = args
        return error

    def __reduce__(self) -> tuple[type[RRStreamError], tuple[object, ...]]:
        # Rebuild from the constructor's fields, not from the message, when Ray or
        # pickle carries the error to another process.
        return type(self), self._init_args


class SessionNotFound(RRStreamError):
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"no session with id {session_id!r}")


class RegistryUnavailable(RRStreamError):
    """The session registry does not answer: Ray is restarting it (or the GCS)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the session registry is not answering ({reason}); try again in "
                         "a few seconds")


class ActorLost(RRStreamError):
    """An actor is dead for good (its process was killed, or its node was lost): calls to
    its handle can never succeed again. Raised at the Ray boundary (pipeline/cluster.py)."""

    def __init__(self, what: str, reason: str) -> None:
        self.what, self.reason = what, reason
        super().__init__(f"{what} was lost: {reason}")


class SessionLost(RRStreamError):
    """A session's actor died and it was not started again: the policy says fail, or it
    had been restarted too often already."""

    def __init__(self, session_id: str, reason: str) -> None:
        self.session_id, self.reason = session_id, reason
        super().__init__(reason)


class StreamUnavailable(RRStreamError):
    """The session exists but has no stream: it ended before it got one, or long ago."""

    def __init__(self, session_id: str, state: str, reason: str | None) -> None:
        self.session_id, self.state, self.reason = session_id, state, reason
        detail = f": {reason}" if reason else ""
        super().__init__(f"session {session_id} is {state} and has no stream{detail}")


class RecordingNotFound(RRStreamError):
    def __init__(self, recording_id: str) -> None:
        self.recording_id = recording_id
        super().__init__(f"no recording with id {recording_id!r}")


class RecordingInProgress(RRStreamError):
    """The recording's session is still streaming into it."""

    def __init__(self, recording_id: str) -> None:
        self.recording_id = recording_id
        super().__init__(f"recording {recording_id!r} is still being written; stop its "
                         "session first")


class RecordingStoreError(RRStreamError):
    """The recording store did not answer or refused (a full disk, S3 unreachable)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"the recording store {url} could not be read or written: {reason}")


class AssetNotFound(RRStreamError):
    """No node's asset cache and no recording has an asset of this hash."""

    def __init__(self, asset_id: str) -> None:
        self.asset_id = asset_id
        super().__init__(f"no asset {asset_id}: no node's asset cache and no recording has "
                         "it (the cache keeps RRSTREAM_ASSET_CACHE_BYTES per node, the oldest "
                         "out first)")


class PoolFull(RRStreamError):
    def __init__(self, used: int, total: int) -> None:
        self.used, self.total = used, total
        super().__init__(f"no browser slot free ({used} of {total} in use); try again later")


class InvalidTransition(RRStreamError):
    def __init__(self, component: str, current: str, requested: str) -> None:
        self.component, self.current, self.requested = component, current, requested
        super().__init__(f"{component}: cannot go from '{current}' to '{requested}'")


class ControlRefused(RRStreamError):
    """A pause, resume or steps call the session cannot take in its state (or steps past
    its limit); `reason` says why in words."""

    def __init__(self, session_id: str, action: str, reason: str) -> None:
        self.session_id, self.action, self.reason = session_id, action, reason
        super().__init__(f"session {session_id} {reason}")


class TakeoverRefused(RRStreamError):
    """A person's take, input or hand-back the session does not take: `held` (someone else
    is in control: `holder` names them), `not_held` (this controller is not, or no longer,
    in control)."""

    def __init__(self, session_id: str, reason: str, message: str,
                 holder: str | None = None) -> None:
        self.session_id, self.reason, self.holder = session_id, reason, holder
        super().__init__(f"session {session_id}: {message}")


class BrowserNotFound(RRStreamError):
    def __init__(self, searched: list[str]) -> None:
        self.searched = searched
        super().__init__(
            "no Chromium found (looked for: " + ", ".join(searched) + "). Run scripts/setup.sh, "
            "install Debian's `chromium`, or set RRSTREAM_CHROMIUM to a Chromium binary."
        )


class BrowserLaunchError(RRStreamError):
    def __init__(self, executable: str | None, reason: str) -> None:
        self.executable, self.reason = executable, reason
        where = executable or "Playwright's bundled Chromium"
        super().__init__(f"could not launch {where}: {reason}")


class NavigationFailed(RRStreamError):
    """A page did not open: the host is unreachable, it did not answer in time, it answered
    an HTTP error, or the URL is a download."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"could not open {url}: {reason}")


class AddressRefused(RRStreamError):
    """A URL names an address the network policy refuses (RRSTREAM_BLOCK_PRIVATE_NETWORKS);
    `reason` says which, e.g. "resolves to 127.0.0.1, a loopback address"."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"{url} {reason}; private networks are blocked "
                         "(RRSTREAM_BLOCK_PRIVATE_NETWORKS)")


class StepFailed(RRStreamError):
    def __init__(self, session_id: str, index: int, action: str, reason: str) -> None:
        self.session_id, self.index, self.action, self.reason = session_id, index, action, reason
        super().__init__(f"session {session_id}: step {index} ({action}) failed: {reason}")


def describe_error(exc: BaseException) -> str:
    """What went wrong, in words a person reads (an HTTP message, a log line, a session's
    error): rrstream's own errors say it themselves; Ray's and Python's are named by what
    they mean, never by their class."""
    exc = unwrap(exc)
    if isinstance(exc, RRStreamError):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    for kind, words in _ray_words():
        if isinstance(exc, kind):
            return words
    if isinstance(exc, TimeoutError):
        return f"timed out{': ' + text if text else ''}"
    if isinstance(exc, ConnectionError | OSError):
        return f"connection or I/O error{': ' + text if text else ''}"
    if isinstance(exc, LookupError | AttributeError | AssertionError | TypeError | NameError):
        return "unexpected internal error (a bug in rrstream; the log has the details)"
    # Playwright's and most libraries' messages are words already ("net::ERR_… at …").
    return text or "unexpected internal error"


def _ray_words() -> list[tuple[type[BaseException], str]]:
    """Ray's errors in words; Ray is imported only once one is described (the Python
    client, serve/client, imports no Ray)."""
    if "ray" not in sys.modules:
        return []
    from ray import exceptions as rex

    return [
        (rex.ActorUnavailableError, "the actor is not answering (it is being restarted)"),
        (rex.ActorDiedError, "the actor died unexpectedly (its process was killed or its "
                             "node was lost)"),
        (rex.RayActorError, "the actor died unexpectedly"),
        (rex.GetTimeoutError, "timed out waiting for an actor"),
        (rex.ObjectLostError, "a result was lost with its node"),
    ]


def unwrap(exc: BaseException) -> BaseException:
    """The error an actor raised, without Ray's RayTaskError wrapping (and its traceback text)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


__all__ = [
    "ActorLost",
    "AddressRefused",
    "AssetNotFound",
    "BrowserLaunchError",
    "BrowserNotFound",
    "ControlRefused",
    "InvalidTransition",
    "NavigationFailed",
    "PoolFull",
    "RecordingInProgress",
    "RecordingNotFound",
    "RegistryUnavailable",
    "RRStreamError",
    "SessionLost",
    "SessionNotFound",
    "StepFailed",
    "StreamUnavailable",
    "TakeoverRefused",
    "describe_error",
    "unwrap",
]
