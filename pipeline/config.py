"""The one place environment variables are read: `RRSTREAM_*` settings."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A comma-separated list in the environment (`RRSTREAM_API_KEYS=a,b`), not JSON.
CommaList = Annotated[list[str], NoDecode]

def is_loopback_host(host: str) -> bool:
    """`host` names this machine only: localhost or an address in 127.0.0.0/8 or ::1."""
    if host.lower() in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

class Settings(BaseSettings):
    """rrstream configuration. Every field can be set as `RRSTREAM_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="RRSTREAM_", extra="forbid", frozen=True)

    # Gateway
    host: str = Field(default="127.0.0.1", description="Address the HTTP/WebSocket gateway binds.")
    port: int = Field(default=8000, ge=1, le=65_535, description="Gateway port.")
    public_url: str | None = Field(
        default=None, description="Base URL viewers use, when it differs from the request's."
    )
    proxy_location: Literal["EveryNode", "HeadOnly"] = Field(
        default="EveryNode", description="Which Ray nodes accept viewer traffic."
    )
    gateway_replicas: int = Field(default=1, ge=1, le=64)
    gateway_max_ongoing_requests: int = Field(
        default=10_000, ge=1, description="Each open WebSocket holds one slot for its whole life."
    )
    ingress: Literal["haproxy", "python"] = Field(
        default="haproxy",
        description="Serve's HTTP data plane: HAProxy routes WebSockets straight to the "
        "replicas (~10x the message rate); `python` is Serve's default proxy, the fallback.",
    )
    gateway_frames_per_s: float = Field(
        default=5_000.0, ge=0,
        description="Frames per second a replica aims to send, summed over all its viewers: "
        "with many viewers each gets fewer, larger frames (0: one frame per batch).",
    )
    viewer_window_bytes: int = Field(
        default=4 * 1024 * 1024, ge=65_536,
        description="Unacknowledged bytes in flight to a viewer that sends acks; past it the "
        "server holds frames back, so a stalled viewer fills its queue, not socket buffers.",
    )
    viewer_queue_frames: int = Field(
        default=256, ge=8,
        description="Page batches queued per viewer (they leave as fewer, larger frames) "
        "before a viewer that falls behind is moved forward to its newest queued checkout.",
    )
    hello_timeout_s: float = Field(
        default=10.0, gt=0,
        description="A viewer that says no hello within this closes with 4408.",
    )
    assets_dir: str | None = Field(
        default=None, description="Built frontend (default: frontend/dist beside the packages)."
    )

    # Access (docs/security.md)
    auth: Literal["required", "off"] | None = Field(
        default=None,
        description="`required`: every REST call needs an API key and every stream a viewer "
        "token. Default: required whenever the gateway listens beyond loopback; `off` is "
        "refused there.",
    )
    api_keys: CommaList = Field(
        default_factory=list, description="Control API keys, comma-separated.")
    api_keys_file: str | None = Field(
        default=None, description="A file of API keys' SHA-256 hex digests, one per line.")
    token_secret: SecretStr | None = Field(
        default=None,
        description="The HMAC secret viewer tokens are signed with: one for every replica "
        "(`rrstream up` makes one per run).",
    )
    allowed_origins: CommaList = Field(
        default_factory=list,
        description="Web origins besides the gateway's own whose pages may open streams "
        "(`https://app.example.com`).",
    )
    trusted_proxies: CommaList = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Peers whose X-Forwarded-For names the client (addresses or CIDRs).",
    )
    limit_session_creations: str = Field(
        default="30/minute", description="Session creations per API key (per client address "
        "when auth is off), per replica; `limits` notation, e.g. `30/minute`.")
    limit_stream_connects: str = Field(
        default="120/minute", description="WebSocket connects per client address, per replica.")
    max_connections_per_client: int = Field(
        default=100, ge=1, description="Open WebSockets per client address, per replica.")
    max_viewers_per_session: int = Field(
        default=1_000, ge=1, description="Open viewers of one session, per replica.")

    # Ray
    ray_address: str | None = Field(
        default=None, description="Join this Ray cluster instead of starting an embedded one."
    )
    namespace: str = "rrstream"
    node_ip: str = Field(
        default="127.0.0.2",
        description="Node IP of the embedded local Ray. Loopback: Ray rewrites 127.0.0.1 and "
        "localhost to the machine's network address, but not the rest of 127.0.0.0/8.",
    )
    dashboard_port: int = Field(default=8265, ge=0, le=65_535)
    browser_slots: int | None = Field(
        default=None, ge=1, description="Browser slots of the local node (default: by memory, CPU)."
    )

    when_full: Literal["queue", "refuse"] = Field(
        default="queue",
        description="No browser slot free: queue new sessions (state pending, with their queue "
        "position), or refuse them with HTTP 503.",
    )
    warm_browsers: int = Field(
        default=1, ge=0,
        description="Browsers kept launched ahead of need (each holds a slot), so a new "
        "session only opens a page.",
    )
    warm_refill_delay_s: float = Field(
        default=4.0, ge=0,
        description="After a session takes a warm browser, the next one is made this much "
        "later, so that the two starts do not stall the node's other sessions at once "
        "(pipeline/spares.py).",
    )
    on_node_loss: Literal["restart", "fail"] = Field(
        default="restart",
        description="A session whose node died: start it again elsewhere, or mark it failed.",
    )
    on_session_crash: Literal["restart", "fail"] = Field(
        default="restart",
        description="A session whose actor died (its worker was killed, out of memory): "
        "start a new actor that reopens its last URL and continues its workflow from the "
        "step that was running, or mark it failed.",
    )
    max_restarts: int = Field(
        default=3, ge=0,
        description="Session actor replacements per session, node losses and crashes "
        "together; past it the session fails.")
    idle_timeout_s: float = Field(
        default=1_800.0, ge=0,
        description="Stop a session that has had no viewer and no running step for this "
        "long (0: never; a session's own `idle_timeout_s` wins).",
    )

    # Browser
    chromium: str | None = Field(
        default=None, description="A Chromium binary; default: Playwright's, else `chromium`."
    )
    headless: bool = True
    shared_browser: bool = Field(
        default=True,
        description="One Chromium per node, shared by its sessions (each in its own browser "
        "context, with its own Playwright); false: every session launches its own Chromium.",
    )
    browser_args: list[str] = Field(default_factory=list, description="Extra Chromium flags.")
    max_browser_crashes: int = Field(
        default=3, ge=1,
        description="Browser or page crashes a session recovers from within "
        "`crash_window_s`; one more and it fails.",
    )
    crash_window_s: float = Field(default=60.0, gt=0,
                                  description="The window `max_browser_crashes` counts in.")
    navigation_timeout_s: float = Field(
        default=30.0, gt=0,
        description="How long the start URL, and a page reopened after a crash, may take to "
        "load; past it the session runs on with the navigation error in its status.",
    )
    snapshot_timeout_s: float = Field(
        default=10.0, gt=0,
        description="A page with no rrweb FullSnapshot this long after its DOMContentLoaded "
        "gets its recorder restarted (twice at most) and the problem in its status.",
    )
    stream_reattach_timeout_s: float = Field(
        default=30.0, gt=0,
        description="A supervised session whose stream was lost fails if it is not given a "
        "new one within this long.",
    )
    driver_node_options: str = Field(
        default="--max-semi-space-size=1",
        description="NODE_OPTIONS of each session's Playwright driver (a node process). A 1 MB "
        "young generation saves ~20 MB per session; empty: node's defaults.",
    )

    # Recording (the seed's rrweb options are the defaults)
    checkout_every_ms: int = Field(
        default=5_000, ge=500,
        description="A changing page takes a checkout (a full snapshot, where late joiners "
        "start) this often; one whose snapshot is large, less often: at most a quarter of "
        "RRSTREAM_MAX_EVENT_BYTES_PER_S goes to these checkouts (frontend/src/recorder.js).",
    )
    sampling_scroll_ms: int = Field(default=100, ge=0)
    sampling_media_ms: int = Field(default=400, ge=0)
    sampling_input: Literal["last", "all"] = "last"
    canvas_fps: float = Field(
        default=2, ge=0, le=30,
        description="Pictures of each <canvas> (2D and WebGL) per second, recorded when "
        "it changed; 0: canvases are not recorded (the viewer shows them empty).",
    )
    webgl: bool = Field(
        default=True,
        description="WebGL in software (SwiftShader) in the node's Chromium, which runs "
        "without a GPU; false: pages get no WebGL context.",
    )
    canvas_quality: float = Field(
        default=0.6, gt=0, le=1,
        description="WebP quality of a canvas picture (PNG where the browser encodes no "
        "WebP).",
    )
    slim_dom: bool = True
    mask_passwords: bool = True
    flush_ms: int = Field(
        default=10, ge=1, le=1_000,
        description="In-page batching window on a busy page (an idle page sends at once).",
    )
    max_batch_chars: int = Field(default=262_144, ge=1_024)
    max_events_per_s: int = Field(
        default=50_000, ge=100,
        description="A page emitting more rrweb events per second is recorded with coarser "
        "sampling from a new checkout, and at the coarsest level paused (1 s, then 2, 4, 8 s "
        "in a row; each pause ends with a checkout); reported in the session's status. "
        "Events are never dropped one by one.",
    )
    max_event_bytes_per_s: int = Field(
        default=1_000_000, ge=0,
        description="A page whose incremental events come to more bytes a second (their "
        "JSON; checkouts not counted) has its recording paused at once, as above, and stays "
        "paused while the page keeps it up (measured in the page at each pause's end): a page "
        "rewriting thousands of elements every frame stays under RRSTREAM_MAX_EVENTS_PER_S "
        "while every byte crosses the node's shared browser server, the streamer and the "
        "recording. 1 MB/s is ~2x one session at 5,000 events/s (bench.hostile: a flood "
        "just under 4 MB/s cost a neighbour 4-8x its p99). 0: no budget.",
    )
    busy_renderer_nice: int = Field(
        default=10, ge=0, le=19,
        description="A renderer of the node's shared Chromium whose main thread was busy "
        "(running or waiting for a core) over 80% of 3 s (a page that never yields, a huge "
        "snapshot, a rewrite every frame) runs at this nice value until it is under 30% for "
        "5 s, so the other sessions' pipelines on the node get the CPU first "
        "(pipeline/renderer_priority.py). 0: off.",
    )
    busy_renderer_cpu: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="Such a renderer also runs on at most this share of one core while "
        "another renderer of the node is at work, in a "
        "cgroup of its own with a CPU quota, where the node lets us create one (a writable "
        "cgroup v1 `cpu` hierarchy, or v2 with the cpu controller delegated; "
        "pipeline/cpu_caps.py): a lower priority alone does not bound it against the "
        "node's Ray processes. 0: no cap.",
    )

    # Streaming
    codec: Literal["lz4-frame", "deflate-raw"] = Field(
        default="deflate-raw",
        description="How the streamer compresses batches for viewers. deflate-raw: 8-10.5x "
        "on 10-100 ms batches, decoded natively by browsers; lz4-frame: 3.9-6.2x, cheaper to "
        "encode and decode (bench/README.md, compression).",
    )
    buffer_max_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Compressed bytes a streamer keeps."
    )
    buffer_max_segments: int = Field(default=8, ge=1)
    ended_retention_s: float = Field(
        default=600.0, ge=0, description="How long an ended session's stream stays readable."
    )
    recordings_url: str = Field(
        default="~/.rrstream/recordings",
        validation_alias=AliasChoices("recordings_url", "RRSTREAM_RECORDINGS_URL",
                                      "RRSTREAM_RECORDINGS_DIR"),
        description="Where recordings are stored: a local directory (each node its own; `~` "
        "is expanded on the node) or any fsspec URL, e.g. `s3://bucket/prefix` (one store "
        "for the whole cluster, so a node that is gone takes nothing with it). Also read "
        "from RRSTREAM_RECORDINGS_DIR. Empty: nothing is recorded.",
    )
    recordings_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec storage options of that URL, as JSON, e.g. "
        '`{"endpoint_url": "http://minio:9000"}` (credentials may come the usual way: '
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL...).",
    )
    recording_chunk_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024,
        description="A recording is written in chunks: one per segment (a checkout, every "
        "few seconds), or this many bytes, whichever comes first; a node that dies loses "
        "at most the chunk it was filling.",
    )
    retention_max_age_s: float = Field(
        default=0, ge=0,
        description="Recordings older than this are deleted, oldest first (with their "
        "exports and assets); 0: kept however old.",
    )
    retention_max_bytes: int = Field(
        default=0, ge=0,
        description="While the whole store holds more than this, its oldest finished "
        "recordings are deleted; 0: no limit.",
    )
    retention_every_s: float = Field(
        default=60.0, gt=0, description="How often retention looks at the store.",
    )
    asset_cache_bytes: int = Field(
        default=256 * 2**20, ge=0,
        description="Bytes of the stylesheets, fonts and images the node's sessions loaded "
        "that its asset cache keeps for viewers (`GET /assets/{sha256}`), the asset put "
        "longest ago out first; 0: nothing is cached and streams keep the pages' URLs.",
    )
    step_delay_ms: int = Field(default=0, ge=0, description="Pause between workflow steps.")

    # Exports (pipeline/export)
    export_slots: int = Field(
        default=1, ge=0,
        description="Exports a node renders at once: its amount of the Ray resource `export` "
        "(the local node's here; a cluster node's from its `ray start --resources`). 0: "
        "this node renders none.",
    )
    export_cpus: float = Field(default=1.0, gt=0, description="CPUs each export task takes.")
    export_nice: int = Field(
        default=10, ge=0, le=19,
        description="The nice level an export's worker, its Chromium and its ffmpeg run at, "
        "so live sessions on the node get the CPU first. 0: the workers' own.",
    )
    export_keep_browser: bool = Field(
        default=True,
        description="An export worker keeps its Chromium (~100-150 MB, idle) for the next "
        "export it runs, which then starts ~1.5 s sooner; false: each export launches and "
        "closes its own.",
    )
    export_max_unfinished: int = Field(
        default=16, ge=1, description="Export jobs queued or running over the cluster; more "
        "are refused with 429.")
    export_max_per_recording: int = Field(
        default=4, ge=1, description="Export jobs queued or running per recording.")

    # Network policy (pipeline/network_policy.py)
    block_private_networks: bool | None = Field(
        default=None,
        description="Sessions refuse loopback, private, link-local, carrier-grade NAT, unique "
        "local, multicast and cloud metadata addresses (after DNS resolution) for the start "
        "URL, every step, redirect, subresource and WebSocket. Default (unset): on whenever "
        "auth is required.",
    )
    allowed_hosts: CommaList = Field(
        default_factory=list,
        description="Hosts sessions may reach although the block would refuse them: host "
        "names, `*.suffix` patterns, addresses or networks, e.g. "
        "`intranet.example,10.1.0.0/16` (the demo site is always allowed).",
    )
    host_resolver_rules: str = Field(
        default="",
        description="Chromium's --host-resolver-rules (`MAP name 127.0.0.5, MAP * ~NOTFOUND`), "
        "given to the browser and used by the network policy's own resolution, so both "
        "agree on what a name resolves to; empty: the system's resolver.",
    )

    @field_validator("api_keys", "allowed_origins", "trusted_proxies", "allowed_hosts",
                     mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("host_resolver_rules")
    @classmethod
    def _valid_rules(cls, value: str) -> str:
        from pipeline.network_policy import parse_rules

        parse_rules(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an address or CIDR") from None
        return value

    @model_validator(mode="after")
    def _auth_off_only_on_loopback(self) -> Settings:
        if self.auth == "off" and not is_loopback_host(self.host):
            raise ValueError(f"RRSTREAM_AUTH=off is allowed only when the gateway listens on "
                             f"loopback, not on {self.host}")
        return self

    @property
    def auth_required(self) -> bool:
        return self.auth == "required" or (self.auth is None and
                                           not is_loopback_host(self.host))

    @property
    def private_networks_blocked(self) -> bool:
        """Whether sessions refuse inside addresses: the explicit setting, else whenever
        auth is required."""
        if self.block_private_networks is not None:
            return self.block_private_networks
        return self.auth_required

__all__ = ["CommaList", "Settings", "is_loopback_host"]
