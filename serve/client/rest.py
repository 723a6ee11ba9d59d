"""The REST half of the client: one call per endpoint of the gateway's API (README, "REST").

Answers are the JSON the gateway sent (dicts and lists, as documented at `/docs`); an
error status raises ApiError, no answer raises GatewayUnreachable. The same Client builds
the Viewers of its sessions and recordings, with the same headers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from serve.client.errors import ApiError, ExportFailed, GatewayUnreachable
from serve.client.viewer import Viewer

JSON = Any


def api_error(response: httpx.Response) -> ApiError:
    """The error a response stands for: its JSON `message`, else `detail`, else the body."""
    detail: Any = None
    message = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail")
        message = body.get("message") or (detail if isinstance(detail, str) else "")
        if not message and detail is not None:
            message = str(detail)
    if not message:
        message = response.text.strip() or response.reason_phrase or "no reason given"
    return ApiError(response.status_code, message, detail)


def _transient(exc: Exception) -> bool:
    """While a gateway replica or the registry is replaced, the API answers 5xx or not at
    all for a moment; a wait rides that out."""
    return isinstance(exc, GatewayUnreachable) or (isinstance(exc, ApiError)
                                                   and exc.status >= 500)


class Client:
    """rrstream's REST API at `base_url` (http://host:port), as an async context manager."""

    def __init__(self, base_url: str, *, timeout: float = 60.0, api_key: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        """`api_key`: sent on every REST call (`Authorization: Bearer`), when the gateway
        requires one (docs/security.md)."""
        self.base_url = base_url.rstrip("/")
        self.headers: dict[str, str] = dict(headers or {})  # every request and socket
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout,
                                       headers=self.headers)

    @property
    def ws_url(self) -> str:
        """The base of the stream URLs: ws:// for http://, wss:// for https://."""
        return "ws" + self.base_url.removeprefix("http")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- sessions --------------------------------------------------------------------------

    async def create_session(self, url: str, **spec: Any) -> dict[str, Any]:
        """POST /sessions: `url` and the rest of the spec (`steps`, `name`, `viewport`,
        `close_when_done`, `max_duration_s`, ...) as the API documents them."""
        return await self._json("POST", "/sessions", json={"url": url, **spec})

    async def session(self, session_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/sessions/{_id(session_id)}")

    async def sessions(self) -> list[dict[str, Any]]:
        return await self._json("GET", "/sessions")

    async def stop_session(self, session_id: str) -> dict[str, Any]:
        """DELETE /sessions/{id}: stops it (stopping an ended session is fine)."""
        return await self._json("DELETE", f"/sessions/{_id(session_id)}")

    async def pause_session(self, session_id: str) -> dict[str, Any]:
        """POST /sessions/{id}/pause: no step starts until `resume_session` (the one running
        finishes); the page stays live. ApiError 409 unless the session is running."""
        return await self._json("POST", f"/sessions/{_id(session_id)}/pause")

    async def resume_session(self, session_id: str) -> dict[str, Any]:
        """POST /sessions/{id}/resume: the workflow runs on. ApiError 409 unless paused."""
        return await self._json("POST", f"/sessions/{_id(session_id)}/resume")

    async def add_steps(self, session_id: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
        """POST /sessions/{id}/steps: `steps` (as `create_session` takes them) run after the
        session's others; at once if it is idle, after `resume_session` if it is paused."""
        return await self._json("POST", f"/sessions/{_id(session_id)}/steps",
                                json={"steps": steps})

    async def viewer_link(self, session_id: str, *, role: str = "view", ttl_s: int = 3_600,
                          label: str | None = None) -> dict[str, Any]:
        """POST /sessions/{id}/viewer-links: a link (`url`, `token`) that opens the session."""
        return await self._json("POST", f"/sessions/{_id(session_id)}/viewer-links",
                                json={"role": role, "ttl_s": ttl_s, "label": label})

    async def revoke_viewer_links(self, session_id: str) -> None:
        """Every link of the session minted so far stops working."""
        await self._call("POST", f"/sessions/{_id(session_id)}/viewer-links/revoke")

    async def wait_for_session(self, session_id: str, predicate: Callable[[dict[str, Any]], bool],
                               timeout_s: float = 60.0, *, poll_s: float = 0.25) -> dict[str, Any]:
        """Polls GET /sessions/{id} until `predicate(info)` holds; returns that info. A 5xx
        or no answer is retried until the deadline; a 4xx (an unknown id) raises at once."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while True:
            try:
                last = await self.session(session_id)
                if predicate(last):
                    return last
            except (ApiError, GatewayUnreachable) as exc:
                if not _transient(exc):
                    raise
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise TimeoutError(f"session {session_id}: not there within {timeout_s:g} s; "
                                   f"last seen: {last}")
            await asyncio.sleep(poll_s)

    async def wait_for_state(self, session_id: str, states: Collection[str],
                             timeout_s: float = 60.0) -> dict[str, Any]:
        """Waits until the session's `state` is one of `states`."""
        return await self.wait_for_session(session_id, lambda info: info["state"] in states,
                                           timeout_s)

    async def pool(self) -> dict[str, Any]:
        return await self._json("GET", "/pool")

    async def healthz(self) -> dict[str, Any]:
        return await self._json("GET", "/healthz")

    async def start_demo(self, **spec: Any) -> dict[str, Any]:
        """The built-in demo workflow on the bundled demo site: `POST /demo/start`, or with
        more of a session's spec (`idle_timeout_s=0`, …) `POST /sessions` with `demo`."""
        if spec:
            return await self._json("POST", "/sessions",
                                    json={"demo": True, "name": "demo", **spec})
        return await self._json("POST", "/demo/start")

    # -- recordings ------------------------------------------------------------------------

    async def recordings(self, **query: Any) -> dict[str, Any]:
        """One page of GET /recordings, newest first: `{"items", "next_cursor"}`. Query:
        `limit`, `cursor`, `name`, `url`, `since`, `until`, `has_errors`."""
        params = {k: (str(v).lower() if isinstance(v, bool) else v)
                  for k, v in query.items() if v is not None}
        return await self._json("GET", "/recordings", params=params)

    async def all_recordings(self, **query: Any) -> list[dict[str, Any]]:
        """Every recording the query matches, page after page."""
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await self.recordings(**query, cursor=cursor)
            found.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return found

    async def search(self, recording_id: str | None = None, **query: Any) -> dict[str, Any]:
        """GET /search (across recordings) or /recordings/{id}/search: `text`, `url`,
        `click`, `limit`; `{"hits": [...], "truncated": …}`."""
        path = "/search" if recording_id is None else f"/recordings/{_id(recording_id)}/search"
        return await self._json("GET", path, params={k: v for k, v in query.items()
                                                     if v is not None})

    async def recording_events(self, recording_id: str,
                               token: str | None = None) -> list[dict[str, Any]]:
        """GET /recordings/{id}/events: the recording as rrweb's JSON array of events
        (`token`: a viewer token of it, instead of the client's API key)."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        response = await self._call("GET", f"/recordings/{_id(recording_id)}/events",
                                    headers=headers)
        events: list[dict[str, Any]] = response.json()
        return events

    async def recording(self, recording_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/recordings/{_id(recording_id)}")

    async def recording_link(self, recording_id: str, *, ttl_s: int = 3_600,
                             label: str | None = None) -> dict[str, Any]:
        """POST /recordings/{id}/viewer-links: a link (`url`, `token`) that replays it."""
        return await self._json("POST", f"/recordings/{_id(recording_id)}/viewer-links",
                                json={"ttl_s": ttl_s, "label": label})

    async def delete_recording(self, recording_id: str) -> None:
        await self._call("DELETE", f"/recordings/{_id(recording_id)}")

    async def recording_frames(self, recording_id: str) -> bytes:
        """The stored frames file as the node wrote it; `serve.client.stored_frames` reads it."""
        return (await self._call("GET", f"/recordings/{_id(recording_id)}/frames")).content

    # -- exports ---------------------------------------------------------------------------

    async def create_export(self, recording_id: str, **options: Any) -> dict[str, Any]:
        """POST /recordings/{id}/exports: `format` ("webm" or "png"), `start_ms`, `end_ms`,
        `at_ms`, `width`, `height`, `fps` (None leaves the server's default). The job."""
        body = {name: value for name, value in options.items() if value is not None}
        return await self._json("POST", f"/recordings/{_id(recording_id)}/exports", json=body)

    async def export(self, recording_id: str, job_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/recordings/{_id(recording_id)}/exports/{_id(job_id)}")

    async def wait_for_export(self, recording_id: str, job_id: str, *, timeout_s: float = 600.0,
                              poll_s: float = 0.25,
                              on_progress: Callable[[dict[str, Any]], None] | None = None
                              ) -> dict[str, Any]:
        """Polls the job until it is done and returns it; `on_progress(job)` sees every
        answer. A failed job raises ExportFailed with its reason; a 5xx or no answer is
        retried until the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                job = await self.export(recording_id, job_id)
            except (ApiError, GatewayUnreachable) as exc:
                if not _transient(exc) or time.monotonic() > deadline:
                    raise
                job = None
            if job is not None:
                if on_progress is not None:
                    on_progress(job)
                if job["state"] == "done":
                    return job
                if job["state"] == "failed":
                    raise ExportFailed(job_id, job.get("error") or "no reason given")
            if time.monotonic() > deadline:
                raise TimeoutError(f"export {job_id}: not done within {timeout_s:g} s; last "
                                   f"seen: {job}")
            await asyncio.sleep(poll_s)

    async def download_export(self, recording_id: str, job_id: str, out: Path) -> int:
        """Writes the done export's file to `out` (through `<out>.partial`); its size."""
        path = f"/recordings/{_id(recording_id)}/exports/{_id(job_id)}/file"
        partial = out.with_name(out.name + ".partial")
        size = 0
        try:
            async with self._http.stream("GET", path) as response:
                if response.is_error:
                    await response.aread()
                    raise api_error(response)
                with partial.open("wb") as file:
                    async for piece in response.aiter_bytes():
                        file.write(piece)
                        size += len(piece)
            partial.replace(out)
        except httpx.HTTPError as exc:
            raise GatewayUnreachable(self.base_url, str(exc) or "the download broke off") \
                from exc
        finally:
            partial.unlink(missing_ok=True)
        return size

    # -- streams ---------------------------------------------------------------------------

    def stream_url(self, session_id: str) -> str:
        return f"{self.ws_url}/sessions/{_id(session_id)}/stream"

    def replay_url(self, recording_id: str) -> str:
        return f"{self.ws_url}/recordings/{_id(recording_id)}/stream"

    def viewer(self, session_id: str, **options: Any) -> Viewer:
        """A Viewer of the session's live stream (options: see Viewer; `token=` a viewer
        token, e.g. the `token` of a session's `view_link`)."""
        headers = {**self.headers, **options.pop("headers", {})}
        return Viewer(self.stream_url(session_id), headers=headers, **options)

    def replay(self, recording_id: str, **options: Any) -> Viewer:
        """A Viewer of the recording replayed in real time. A replay sends no `status`, and
        nothing while the page was still, so it has no idle watchdog unless asked."""
        headers = {**self.headers, **options.pop("headers", {})}
        return Viewer(self.replay_url(recording_id), headers=headers,
                      **{"idle_timeout_s": None, **options})

    # -- plumbing --------------------------------------------------------------------------

    async def _json(self, method: str, path: str, *, json: JSON = None,
                    params: dict[str, Any] | None = None) -> Any:
        return (await self._call(method, path, json=json, params=params)).json()

    async def _call(self, method: str, path: str, *, json: JSON = None,
                    params: dict[str, Any] | None = None,
                    headers: dict[str, str] | None = None) -> httpx.Response:
        try:
            response = await self._http.request(method, path, json=json, params=params,
                                                headers=headers)
        except httpx.TimeoutException as exc:
            raise GatewayUnreachable(self.base_url, f"no answer in time ({exc})") from exc
        except httpx.HTTPError as exc:
            raise GatewayUnreachable(self.base_url, str(exc) or type(exc).__name__) from exc
        if response.is_error:
            raise api_error(response)
        return response


def _id(value: str) -> str:
    return quote(value, safe="")


__all__ = ["Client", "api_error"]
