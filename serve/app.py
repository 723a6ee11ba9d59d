"""Starting the pieces: an embedded local Ray, the Serve gateway, and shutting both down."""

from __future__ import annotations

import logging
import os

import psutil
import ray
from ray import serve

from pipeline.config import Settings
from pipeline.registry import REGISTRY_NAME, get_or_create_registry
from serve.gateway import Gateway

APP_NAME = "rrstream"
_MB_PER_BROWSER = 400
_log = logging.getLogger(__name__)


def default_browser_slots() -> int:
    """Browser slots this machine can hold: by memory (~400 MB each), at most 4 per core."""
    memory_mb = psutil.virtual_memory().total // (1024 * 1024)
    return max(1, min(memory_mb // _MB_PER_BROWSER, 4 * (os.cpu_count() or 1)))


def start_ray(settings: Settings, *, dashboard: bool = True, log_to_driver: bool = True) -> None:
    """Joins `settings.ray_address`, or starts an embedded Ray on loopback."""
    if ray.is_initialized():
        return
    if settings.ray_address:
        ray.init(address=settings.ray_address, namespace=settings.namespace)
        return
    ray.init(
        namespace=settings.namespace,
        _node_ip_address=settings.node_ip,
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        dashboard_port=settings.dashboard_port,
        resources={"browser": settings.browser_slots or default_browser_slots()},
        log_to_driver=log_to_driver,
    )


def deploy_gateway(settings: Settings) -> None:
    """Runs the Serve gateway on settings.host:settings.port (blocking until it is up)."""
    serve.start(http_options={"host": settings.host, "port": settings.port})
    gateway = Gateway.options(
        num_replicas=settings.gateway_replicas,
        max_ongoing_requests=settings.gateway_max_ongoing_requests,
    ).bind(settings)
    serve.run(gateway, name=APP_NAME, route_prefix="/")


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
        serve.shutdown()
    finally:
        ray.shutdown()


__all__ = ["APP_NAME", "default_browser_slots", "deploy_gateway", "get_or_create_registry",
           "shutdown", "start_ray"]
