"""`rrstream` command line: run the stack locally, and drive sessions through the HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from serve.client import ApiError, Client, GatewayUnreachable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rrstream", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="embedded Ray + Serve gateway + a demo session")
    up.add_argument("--host", help="gateway bind address (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="gateway port (default 8000)")
    up.add_argument("--dashboard-port", type=int, help="Ray dashboard port (default 8265)")
    up.add_argument("--address", help="join this Ray cluster instead of starting one")
    up.add_argument("--no-demo", action="store_true", help="do not start the demo session")
    up.set_defaults(run=_up)

    status = commands.add_parser("status", help="the browser pool: nodes, slots, queue")
    status.add_argument("--gateway", default="http://127.0.0.1:8000", help="gateway base URL")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.set_defaults(run=_status)

    session = commands.add_parser("session", help="start, list, show, stop sessions")
    session.add_argument("--gateway", default="http://127.0.0.1:8000", help="gateway base URL")
    actions = session.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start", help="start a session on URL")
    start.add_argument("url")
    start.add_argument("--steps", type=Path, help="JSON file with a list of workflow steps")
    start.add_argument("--name")
    start.set_defaults(run=_session_start)
    actions.add_parser("list", help="list sessions").set_defaults(run=_session_list)
    for name, run in (("show", _session_show), ("stop", _session_stop)):
        sub = actions.add_parser(name, help=f"{name} one session")
        sub.add_argument("session_id")
        sub.set_defaults(run=run)

    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


def _up(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in {
        "host": args.host, "port": args.port, "dashboard_port": args.dashboard_port,
        "ray_address": args.address,
    }.items() if v is not None}
    settings = Settings(**overrides)

    from serve.app import deploy_gateway, ray_cli_commands, shutdown, start_ray

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("[rrstream] starting Ray (embedded, loopback)…", flush=True)
    start_ray(settings)
    try:
        print("[rrstream] deploying the Serve gateway…", flush=True)
        deploy_gateway(settings)
        base = f"http://{settings.host}:{settings.port}"
        dashboard_url = f"http://127.0.0.1:{settings.dashboard_port}"
        print(f"[rrstream] gateway:        {base}  (API docs: {base}/docs)", flush=True)
        if not args.no_demo:
            # The demo waits for you however long you are away (no idle timeout).
            info = _request(base, lambda client: client.start_demo(idle_timeout_s=0))
            print(f"[rrstream] demo session:   {info['id']}", flush=True)
            print(f"[rrstream] viewer:         {info['viewer_url']}", flush=True)
        else:
            print(f"[rrstream] viewer:         {base}/", flush=True)
        print(f"[rrstream] Ray dashboard:  {dashboard_url}", flush=True)
        # Ray 2.60 turns on token authentication: the dashboard asks for the token first.
        print("[rrstream]   it asks for Ray's token: `ray get-auth-token` prints it", flush=True)
        print("[rrstream] Ray's CLI from another shell:", flush=True)
        for command in ray_cli_commands():
            print(f"[rrstream]   {command}", flush=True)
        print("[rrstream] Ctrl-C stops everything.", flush=True)
        stop.wait()
    finally:
        print("\n[rrstream] stopping sessions, Serve and Ray…", flush=True)
        shutdown(settings)
        print("[rrstream] stopped.", flush=True)
    return 0


def _request(gateway: str, call: Callable[[Client], Awaitable[Any]]) -> Any:
    """One REST call through the client, from this synchronous command."""
    async def run() -> Any:
        async with Client(gateway, timeout=60) as client:
            return await call(client)

    return asyncio.run(run())


def _print_json(body: Any) -> None:
    print(json.dumps(body, indent=2))


def _call(args: argparse.Namespace, call: Callable[[Client], Awaitable[Any]],
          show: Callable[[Any], None] = _print_json) -> int:
    """Runs `call` and shows its answer; 1 for an HTTP error, 2 for no answer."""
    try:
        body = _request(args.gateway, call)
    except GatewayUnreachable as exc:
        print(f"rrstream: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"rrstream: HTTP {exc.status}: {exc.message}", file=sys.stderr)
        return 1
    show(body)
    return 0


def _print_pool(pool: dict[str, Any]) -> None:
    print(f"browser slots: {pool['slots_used']} used of {pool['slots_total']}"
          f" ({max(pool['slots_total'] - pool['slots_used'], 0)} free); "
          f"queue: {len(pool['queue'])} (when full: {pool['when_full']})")
    rows = [("NODE", "ADDRESS", "ALIVE", "USED", "FREE", "STREAMER", "BROWSER", "SESSIONS")]
    for node in pool["nodes"]:
        rows.append((node["node_id"][:12], node["address"], "yes" if node["alive"] else "no",
                     str(node["slots_used"]), str(max(node["slots_total"] - node["slots_used"], 0)),
                     node.get("streamer", "-"), node.get("browser", "-"),
                     " ".join(node["sessions"]) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    if pool["queue"]:
        print("queued: " + " ".join(pool["queue"]))


def _status(args: argparse.Namespace) -> int:
    return _call(args, lambda client: client.pool(), _print_json if args.json else _print_pool)


def _session_start(args: argparse.Namespace) -> int:
    steps = json.loads(args.steps.read_text()) if args.steps else []
    return _call(args, lambda client: client.create_session(args.url, steps=steps,
                                                            name=args.name))


def _session_list(args: argparse.Namespace) -> int:
    return _call(args, lambda client: client.sessions())


def _session_show(args: argparse.Namespace) -> int:
    return _call(args, lambda client: client.session(args.session_id))


def _session_stop(args: argparse.Namespace) -> int:
    return _call(args, lambda client: client.stop_session(args.session_id))


if __name__ == "__main__":
    sys.exit(main())
