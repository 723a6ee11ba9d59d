"""Starting the pieces: an embedded local Ray, the Serve gateway, and shutting both down."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil
import ray
from ray import serve
from ray.serve import Application

from pipeline.actors import REGISTRY_NAME
from pipeline.config import Settings
from pipeline.export.actor import EXPORT_RESOURCE, EXPORTS_NAME
from pipeline.ports import free_port
from serve.gateway import Gateway

APP_NAME = "rrstream"
_MB_PER_BROWSER = 400
_HEALTH_CHECK_PERIOD_S = 2.0
_log = logging.getLogger(__name__)


def default_browser_slots() -> int:
    """Browser slots this machine can hold: by memory (~400 MB each), at most 4 per core."""
    memory_mb = psutil.virtual_memory().total // (1024 * 1024)
    return max(1, min(memory_mb // _MB_PER_BROWSER, 4 * (os.cpu_count() or 1)))


def ray_environment(settings: Settings) -> dict[str, str]:
    """Environment for the raylet; Serve's controller and proxies and every actor's worker
    inherit it."""
    # Ray starts its workers at nice 15, below its own daemons: the whole data path
    # (session actors, streamers, gateway replicas) then stalls for tens of ms whenever a
    # nice-0 process wants the CPU (Ray's agents, a browser renderer, a worker starting).
    # On 2 cores that was the 500-viewer fan-out's p99 (302 -> 190 ms per event) and the
    # one-viewer latency's first seconds (p99 80 -> 23 ms) in bench.fanout / bench.latency.
    env = {"RAY_worker_niceness": "0"}
    if settings.ingress != "haproxy":
        return {**env, "RAY_SERVE_ENABLE_HA_PROXY": "0"}
    # HAProxy's files and ports default to fixed values; keep each Ray instance's apart.
    # The directory name stays short: HAProxy refuses socket paths over 97 bytes.
    state = Path(tempfile.mkdtemp(prefix="rrh", dir="/tmp"))
    return {
        **env,
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(state / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(state / "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(state / "metrics.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(state),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(state / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(free_port()),
        # Serve starts HAProxy with 4 threads; on a machine with fewer cores they only
        # take turns (bench.fanout on 2 cores: 4 threads 15-17% of a core, 1 thread 11-13%).
        "RAY_SERVE_HAPROXY_NBTHREAD": str(min(4, os.cpu_count() or 1)),
    }


def start_ray(settings: Settings, *, dashboard: bool = True, log_to_driver: bool = True) -> None:
    """Joins `settings.ray_address`, or starts an embedded Ray on loopback."""
    if ray.is_initialized():
        return
    # An embedded Ray's raylet, and so Serve's controller and proxies, start from this
    # process and inherit its environment.
    os.environ.update(ray_environment(settings))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports to the internet
    if settings.ray_address:
        ray.init(address=settings.ray_address, namespace=settings.namespace)
        return
    # A replica behind HAProxy stays up 30 s after it is told to stop, for a cloud load
    # balancer to stop sending to it. Nothing stands in front of an embedded Ray: that
    # was 30 s of every Ctrl-C.
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
    # Serve's own logs (an access-log line per request: the viewer page polls /sessions
    # every 2 s) go to Ray's log files only, not to the terminal of `rrstream up`.
    os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "0")
    ray.init(
        address="local",  # a new Ray, never whatever cluster /tmp/ray last recorded
        namespace=settings.namespace,
        _node_ip_address=settings.node_ip,
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        dashboard_port=settings.dashboard_port,
        resources={"browser": settings.browser_slots or default_browser_slots(),
                   EXPORT_RESOURCE: settings.export_slots},
        log_to_driver=log_to_driver,
    )


def ray_cli_commands() -> list[str]:
    """Ray's own CLI, as it works from another shell against the Ray this process runs in.

    Ray 2.60 turns token authentication on for a Ray that `ray.init` starts (and marks
    this process and its children RAY_AUTH_MODE=token); a shell of its own has no such
    mark, and `ray status` there fails with an authentication error. `--address` picks
    this Ray among others on the machine (without it the CLI refuses to choose).
    """
    ray_bin = Path(sys.executable).with_name("ray")
    auth = "RAY_AUTH_MODE=token " if os.environ.get("RAY_AUTH_MODE") == "token" else ""
    address = ray.get_runtime_context().gcs_address
    return [f"{auth}{ray_bin} status --address {address}",
            f"{auth}{ray_bin} list actors --address {address}"]


def build_app(args: dict[str, Any]) -> Application:
    """The gateway as a Serve application, for `serve deploy cluster/serve.yaml`.

    `args` is the application's `args:` in the Serve config: Settings fields that win
    over the RRSTREAM_* environment of the Ray nodes. Where the gateway listens and which
    ingress serves it belong to the cluster (serve.yaml's http_options and proxy_location,
    RAY_SERVE_ENABLE_HA_PROXY set before `ray start`).
    """
    # A cluster's gateway listens beyond loopback (serve.yaml's http_options), which this
    # builder cannot see: auth is required unless the args say otherwise.
    return _gateway(Settings(**{"auth": "required", **args}))


def _gateway(settings: Settings) -> Application:
    return Gateway.options(
        num_replicas=settings.gateway_replicas,
        max_ongoing_requests=settings.gateway_max_ongoing_requests,
        # Serve's controller notices a dead replica at its next health check (every 10 s
        # by default); until the replacement runs, the viewers of a lone replica wait.
        health_check_period_s=_HEALTH_CHECK_PERIOD_S,
    ).bind(settings)


def deploy_gateway(settings: Settings) -> None:
    """Runs the Serve gateway on settings.host:settings.port (blocking until it is up)."""
    serve.start(http_options={"host": settings.host, "port": settings.port},
                proxy_location=settings.proxy_location)
    serve.run(_gateway(settings), name=APP_NAME, route_prefix="/")


def shutdown(settings: Settings) -> None:
    """Stops every session (closing its Chromium), then Serve, then Ray."""
    if not ray.is_initialized():
        return
    try:
        registry = ray.get_actor(REGISTRY_NAME, namespace=settings.namespace)
        ray.get(registry.shutdown.remote(), timeout=30)
        ray.kill(registry)
    except Exception as exc:  # no registry yet, or it is already gone
        _log.info("registry shutdown: %s", exc)
    try:
        ray.kill(ray.get_actor(EXPORTS_NAME, namespace=settings.namespace))
    except ValueError:  # no export was ever asked for
        pass
    try:
        serve.shutdown()
    finally:
        ray.shutdown()
        state = os.environ.get("RAY_SERVE_HAPROXY_SERVER_STATE_BASE", "")
        if Path(state).name.startswith("rrh"):
            shutil.rmtree(state, ignore_errors=True)


__all__ = ["APP_NAME", "build_app", "default_browser_slots", "deploy_gateway",
           "ray_cli_commands", "shutdown", "start_ray"]
