"""The gateway's Serve replicas, found and killed for real: by Serve's replica id (which
`GET /healthz` names), a SIGKILL of the replica's worker process or `ray.kill`. Needs the
caller connected to the Ray that runs them."""

from __future__ import annotations

import os
import signal
from typing import Any, Literal

import ray

from serve.app import APP_NAME

KillHow = Literal["sigkill", "ray.kill"]
_SERVE_NAMESPACE = "serve"
_REPLICA_PREFIX = f"SERVE_REPLICA::{APP_NAME}#Gateway#"


def replica_names() -> dict[str, str]:
    """Serve's replica id -> the replica actor's name, for every gateway replica alive."""
    return {entry["name"].removeprefix(_REPLICA_PREFIX): entry["name"]
            for entry in ray.util.list_named_actors(all_namespaces=True)
            if entry["namespace"] == _SERVE_NAMESPACE
            and entry["name"].startswith(_REPLICA_PREFIX)}


def replica_handle(replica: str) -> Any:
    return ray.get_actor(f"{_REPLICA_PREFIX}{replica}", namespace=_SERVE_NAMESPACE)


def replica_pid(replica: str) -> int:
    """The process id of the replica's worker (it runs on this machine)."""
    return ray.get(replica_handle(replica).__ray_call__.remote(lambda _: os.getpid()),
                   timeout=30)


def kill_replica(replica: str, how: KillHow) -> int:
    """Kills the replica as a crash would (Serve's controller then replaces it); returns the
    pid of its worker process."""
    pid = replica_pid(replica)
    if how == "sigkill":
        os.kill(pid, signal.SIGKILL)
    else:
        ray.kill(replica_handle(replica), no_restart=False)
    return pid


__all__ = ["KillHow", "kill_replica", "replica_handle", "replica_names", "replica_pid"]
