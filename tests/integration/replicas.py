"""The gateway's Serve replicas, found, asked and killed for real: by Serve's replica id
(which `GET /healthz` names); asked on their own HTTP port (the one the ingress forwards
to), so a test knows which replica holds how many viewers; killed by a SIGKILL of the
replica's worker process or by `ray.kill`. Needs the caller connected to the Ray that runs
them, on this machine."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any, Literal

import httpx
import psutil
import ray

from serve.app import APP_NAME
from serve.client import Client

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


def replica_health(replica: str) -> dict[str, Any]:
    """The replica's own `GET /healthz`, asked on the port its HTTP server listens on."""
    pid = replica_pid(replica)
    ports = sorted({c.laddr.port for c in psutil.Process(pid).net_connections("tcp")
                    if c.status == psutil.CONN_LISTEN})
    for port in ports:  # the worker also listens for Ray; only the HTTP server answers
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            continue
        if isinstance(health, dict) and health.get("replica") == replica:
            return health
    raise LookupError(f"replica {replica} (pid {pid}) answers /healthz on none of {ports}")


async def serving_replica(client: Client, timeout_s: float = 60.0) -> str:
    """The replica that answers `GET /healthz` through the ingress, once one does (the
    shared test stack has one)."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                return (await client.healthz())["replica"]
            except Exception:  # not replaced yet: the ingress has no replica to send it to
                await asyncio.sleep(0.25)


def kill_replica(replica: str, how: KillHow) -> int:
    """Kills the replica as a crash would (Serve's controller then replaces it); returns the
    pid of its worker process."""
    pid = replica_pid(replica)
    if how == "sigkill":
        os.kill(pid, signal.SIGKILL)
    else:
        ray.kill(replica_handle(replica), no_restart=False)
    return pid


__all__ = ["KillHow", "kill_replica", "replica_handle", "replica_health", "replica_names",
           "replica_pid", "serving_replica"]
