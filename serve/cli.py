"""`rrstream` command line: run the stack locally, and drive sessions through the HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from pipeline.config import Settings
from serve.client import ApiError, Client, ExportFailed, GatewayUnreachable
from serve.viewer_tokens import new_secret


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
    _gateway_options(status)
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.set_defaults(run=_status)

    session = commands.add_parser("session", help="start, list, show, pause, resume, add "
                                  "steps to and stop sessions")
    _gateway_options(session)
    actions = session.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start", help="start a session on URL")
    start.add_argument("url")
    start.add_argument("--steps", type=Path, help="JSON file with a list of workflow steps")
    start.add_argument("--name")
    start.set_defaults(run=_session_start)
    actions.add_parser("list", help="list sessions").set_defaults(run=_session_list)
    for name, run in (("show", _session_show), ("stop", _session_stop),
                      ("pause", _session_pause), ("resume", _session_resume)):
        sub = actions.add_parser(name, help=f"{name} one session")
        sub.add_argument("session_id")
        sub.set_defaults(run=run)
    steps = actions.add_parser("steps", help="add workflow steps to a session")
    steps.add_argument("session_id")
    steps.add_argument("steps", type=Path, help="JSON file with a list of workflow steps")
    steps.set_defaults(run=_session_steps)
    link = actions.add_parser("link", help="a viewer link to share (its token in the URL)")
    link.add_argument("session_id")
    link.add_argument("--ttl", type=int, default=3_600, help="seconds it works (default 3600)")
    link.add_argument("--label", help="who it is for")
    link.set_defaults(run=_session_link)
    revoke = actions.add_parser("revoke", help="every viewer link of a session stops working")
    revoke.add_argument("session_id")
    revoke.set_defaults(run=_session_revoke)

    export = commands.add_parser("export", help="a recording as a WebM video or a PNG still")
    _gateway_options(export)
    export.add_argument("recording_id")
    export.add_argument("--format", choices=("webm", "png"), default="webm")
    export.add_argument("--out", type=Path,
                        help="file to write (default: <recording-id>-<job>.<format>)")
    export.add_argument("--start-ms", type=int, help="webm: from this offset (default 0)")
    export.add_argument("--end-ms", type=int, help="webm: to this offset (default: the end)")
    export.add_argument("--at-ms", type=int, help="png: the moment shown (default 0)")
    export.add_argument("--width", type=int, help="pixels (default 1280)")
    export.add_argument("--height", type=int, help="pixels (default 800)")
    export.add_argument("--fps", type=int, help="webm: frames per second (default 10)")
    export.add_argument("--timeout", type=float, default=1_800.0,
                        help="seconds to wait for the export (default 1800)")
    export.set_defaults(run=_export)

    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


def _gateway_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", default="http://127.0.0.1:8000", help="gateway base URL")
    parser.add_argument("--api-key", default=os.environ.get("RRSTREAM_API_KEY"),
                        help="API key, when the gateway requires one (default: "
                        "$RRSTREAM_API_KEY)")


def _up(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in {
        "host": args.host, "port": args.port, "dashboard_port": args.dashboard_port,
        "ray_address": args.address,
    }.items() if v is not None}
    settings = Settings(**overrides)
    settings, made_key = _access_for_this_run(settings)
    api_key = made_key or os.environ.get("RRSTREAM_API_KEY") or next(iter(settings.api_keys), None)

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
        if settings.auth_required:
            print("[rrstream] auth:           required (API key, viewer tokens; "
                  "docs/security.md)", flush=True)
            if made_key:
                print(f"[rrstream] API key:        {made_key}  (made for this run; set "
                      "RRSTREAM_API_KEYS to choose your own)", flush=True)
        else:
            print("[rrstream] auth:           off: the gateway listens on loopback only "
                  "(RRSTREAM_AUTH=required turns it on)", flush=True)
        if not args.no_demo:
            # The demo waits for you however long you are away (no idle timeout).
            info = _request(base, lambda client: client.start_demo(idle_timeout_s=0),
                            api_key)
            viewer = info["view_link"]["url"] if settings.auth_required else info["viewer_url"]
            print(f"[rrstream] demo session:   {info['id']}", flush=True)
            print(f"[rrstream] viewer:         {viewer}", flush=True)
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


def _access_for_this_run(settings: Settings) -> tuple[Settings, str | None]:
    """A token secret for this run unless one is set (every replica gets the same, as
    Settings travel with the gateway); when auth is required and no key is configured,
    an API key made for this run (returned, to be printed once)."""
    changes: dict[str, Any] = {}
    if settings.token_secret is None:
        changes["token_secret"] = SecretStr(new_secret())
    made = None
    if settings.auth_required and not settings.api_keys and not settings.api_keys_file:
        made = new_secret()
        changes["api_keys"] = [made]
    # model_copy skips validation: the changes are of the right type by construction.
    return settings.model_copy(update=changes), made


def _request(gateway: str, call: Callable[[Client], Awaitable[Any]],
             api_key: str | None = None) -> Any:
    """One REST call through the client, from this synchronous command."""
    async def run() -> Any:
        async with Client(gateway, timeout=60, api_key=api_key) as client:
            return await call(client)

    return asyncio.run(run())


def _print_json(body: Any) -> None:
    print(json.dumps(body, indent=2))


def _call(args: argparse.Namespace, call: Callable[[Client], Awaitable[Any]],
          show: Callable[[Any], None] = _print_json) -> int:
    """Runs `call` and shows its answer; 1 for an HTTP error, 2 for no answer."""
    try:
        body = _request(args.gateway, call, args.api_key)
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


def _session_pause(args: argparse.Namespace) -> int:
    return _call(args, lambda client: client.pause_session(args.session_id))


def _session_resume(args: argparse.Namespace) -> int:
    return _call(args, lambda client: client.resume_session(args.session_id))


def _session_steps(args: argparse.Namespace) -> int:
    steps = json.loads(args.steps.read_text())
    return _call(args, lambda client: client.add_steps(args.session_id, steps))


def _session_link(args: argparse.Namespace) -> int:
    return _call(args, lambda client: client.viewer_link(args.session_id, ttl_s=args.ttl,
                                                         label=args.label))


def _session_revoke(args: argparse.Namespace) -> int:
    return _call(args, lambda client: client.revoke_viewer_links(args.session_id),
                 lambda _: print(f"every viewer link of {args.session_id} is revoked"))


def _export(args: argparse.Namespace) -> int:
    """Starts the export, shows its progress on stderr, downloads the file."""
    bar = ProgressBar(sys.stderr)

    async def run(client: Client) -> tuple[dict[str, Any], Path, int]:
        job = await client.create_export(
            args.recording_id, format=args.format, start_ms=args.start_ms, end_ms=args.end_ms,
            at_ms=args.at_ms, width=args.width, height=args.height, fps=args.fps)
        job = await client.wait_for_export(args.recording_id, job["id"], timeout_s=args.timeout,
                                           on_progress=bar.show)
        out = args.out or Path(f"{args.recording_id}-{job['id']}.{args.format}")
        return job, out, await client.download_export(args.recording_id, job["id"], out)

    try:
        job, out, size = _request(args.gateway, run, args.api_key)
    except GatewayUnreachable as exc:
        bar.end()
        print(f"rrstream: {exc}", file=sys.stderr)
        return 2
    except (ApiError, ExportFailed, TimeoutError) as exc:
        bar.end()
        status = f"HTTP {exc.status}: {exc.message}" if isinstance(exc, ApiError) else str(exc)
        print(f"rrstream: {status}", file=sys.stderr)
        return 1
    bar.end()
    print(f"{out}: {size:,} bytes, {job['frames']} frames ({job['captured']} rendered, the "
          f"rest repeated)")
    return 0


class ProgressBar:
    """`[#########-----------]  45%  135/300 frames  running` on one line of a terminal."""

    WIDTH = 30

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._shown = False

    def show(self, job: dict[str, Any]) -> None:
        done = round(job["progress"] * self.WIDTH)
        frames = f"{job['frames']}/{job['frames_total']} frames" if job.get("frames_total") \
            else ""
        line = (f"[{'#' * done}{'-' * (self.WIDTH - done)}] {job['progress']:4.0%}  {frames}  "
                f"{job['state']}")
        self._stream.write(f"\r{line:<72}")
        self._stream.flush()
        self._shown = True

    def end(self) -> None:
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()
            self._shown = False


if __name__ == "__main__":
    sys.exit(main())
