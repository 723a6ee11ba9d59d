"""cluster/loopback.yaml for real: `ray up` with Ray's local (on-prem) provider over SSH
to 127.0.0.2, the project's own setup on that "remote" node, `serve deploy` of
cluster/serve.yaml, a session streamed through Serve's HAProxy ingress, `ray down`.

The test brings the sshd the config assumes: on 127.0.0.2:22 only, root by key only,
in a PID namespace of its own (`ray stop` kills every Ray process it can see; there it
sees only this cluster's, never another Ray on the machine), with HOME set to
WORK/home so that the node's files (checkout, venv, ~/.bashrc, Ray's bootstrap files)
stay under WORK. Killing that namespace at the end ends whatever is left in it.

WORK/home and WORK/cache are kept between runs, like a provisioned node: the first run
installs the project from the package registries (minutes), later ones find it set up.
Needs root, sshd, rsync and unshare (Debian: `apt-get install openssh-server rsync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from serve.client import Viewer
from tests.integration.redis_server import RedisServer, redis_server
from tests.integration.redis_server import missing as redis_missing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "cluster" / "loopback.yaml"
WORK = Path("/tmp/rrstream-loopback")  # loopback.yaml names it (the key, HAProxy's dir)
HAPROXY_DIR = Path("/tmp/rrlb-haproxy")
# The node's temp directory, as a machine of its own would have one: in its PID
# namespace every process outside looks dead, so what its browsers sweep
# (pipeline/browser_dirs.py) must not be this machine's. Short: Chromium's sockets go a
# few levels below it.
NODE_TMP = Path("/tmp/rrlb-tmp")
NODE_ENV = {"HOME": f"{WORK}/home", "XDG_CACHE_HOME": f"{WORK}/cache",
            "npm_config_cache": f"{WORK}/cache/npm", "TMPDIR": str(NODE_TMP)}
HEAD_IP = "127.0.0.2"
DASHBOARD = f"http://{HEAD_IP}:28265"
# The gateway listens on 127.0.0.1, not the node IP: HAProxy reaches a replica on its
# own node at 127.0.0.1:PORT, and the replicas bind http_options.host.
GATEWAY_HOST, GATEWAY_PORT = "127.0.0.1", 28000
BIN = Path(sys.executable).parent
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


def _head_env(name: str) -> str:
    """A VAR=value the config's head `ray start` sets (the GCS's Redis, its prefix)."""
    (head,) = [c for c in yaml.safe_load(CONFIG.read_text())["head_start_ray_commands"]
               if "ray start" in c]
    return next(w.split("=", 1)[1] for w in head.split() if w.startswith(f"{name}="))


REDIS_HOST, REDIS_PORT = _head_env("RAY_REDIS_ADDRESS").split(":")
GCS_NAMESPACE = _head_env("RAY_external_storage_namespace")


def _missing() -> str | None:
    """Why this machine cannot run the test, or None."""
    if os.geteuid() != 0:
        return "needs root (an sshd taking root's key, a PID namespace)"
    for tool in ("sshd", "ssh", "ssh-keygen", "rsync", "unshare"):
        if not shutil.which(tool, path=f"{os.environ.get('PATH', '')}:/usr/sbin"):
            return f"{tool} not installed (apt-get install openssh-server rsync)"
    if redis_missing():
        return redis_missing()
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                           capture_output=True)
    if probe.returncode != 0:
        return f"cannot make a PID namespace: {probe.stderr.decode().strip()}"
    busy = [f"{host}:{port}" for host, port in
            [(HEAD_IP, 22), ("0.0.0.0", 26379), (HEAD_IP, 28265), (GATEWAY_HOST, GATEWAY_PORT),
             (REDIS_HOST, int(REDIS_PORT))]
            if not _port_free(host, port)]
    return f"ports in use: {', '.join(busy)}" if busy else None


def _port_free(host: str, port: int) -> bool:
    """No one listens there (SO_REUSEADDR, as servers do: a closed connection in
    TIME_WAIT does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _run(*args: str | Path, log: Path, timeout: float) -> None:
    with log.open("a") as out:
        done = subprocess.run([str(a) for a in args], cwd=ROOT, env=ENV, stdout=out,
                              stderr=subprocess.STDOUT, timeout=timeout)
    assert done.returncode == 0, f"{args[:3]} failed:\n{log.read_text()[-6000:]}"


def _cluster_processes() -> dict[psutil.Process, str]:
    """This cluster's Ray and HAProxy processes (they run from WORK's venv or dirs), by
    name."""
    marks = (f"{WORK}/home/", f"{WORK}/ray", str(HAPROXY_DIR))
    return {proc: proc.info["name"] or "" for proc in psutil.process_iter(["name", "cmdline"])
            if any(mark in " ".join(proc.info["cmdline"] or []) for mark in marks)}


@contextlib.contextmanager
def _sshd() -> Iterator[None]:
    """sshd on 127.0.0.2:22 in its own PID namespace; SIGKILL to `unshare` ends it all
    (--kill-child takes sshd, the namespace's init, and the kernel the rest)."""
    (WORK / "home").mkdir(parents=True, exist_ok=True)
    NODE_TMP.mkdir(mode=0o700, exist_ok=True)
    (WORK / "cache").mkdir(exist_ok=True)
    WORK.chmod(0o700)
    for key in ("id_ed25519", "ssh_host_ed25519_key"):
        if not (WORK / key).exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", WORK / key],
                           check=True)
    shutil.copy(WORK / "id_ed25519.pub", WORK / "authorized_keys")
    config = WORK / "sshd_config"
    config.write_text(f"""\
ListenAddress {HEAD_IP}:22
HostKey {WORK}/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile {WORK}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowUsers root
SetEnv {" ".join(f"{k}={v}" for k, v in NODE_ENV.items())}
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    sshd = shutil.which("sshd", path="/usr/sbin:/usr/local/sbin") or "sshd"
    with (WORK / "sshd.log").open("w") as log:
        proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
                                 sshd, "-D", "-e", "-f", str(config)],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while _port_free(HEAD_IP, 22):
            assert proc.poll() is None, (WORK / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not start listening"
            time.sleep(0.1)
        yield
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)


@dataclass
class LoopbackCluster:
    log: Path
    redis: RedisServer
    down: bool = False

    def ray_down(self) -> None:
        if not self.down:
            self.down = True
            _run(BIN / "ray", "down", CONFIG, "-y", log=self.log, timeout=300)


API_KEY = "loopback-cluster-key"


def _node_secrets() -> None:
    """The node's access secrets, as scripts/cluster-secrets.sh writes them (the node's
    HOME is WORK/home: the test runner's own ~/.rrstream stays untouched)."""
    secrets = WORK / "home" / ".rrstream"
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "api-keys.sha256").write_text(hashlib.sha256(API_KEY.encode()).hexdigest() + "\n")
    (secrets / "secrets.env").write_text(
        "RRSTREAM_AUTH=required\nRRSTREAM_TOKEN_SECRET=loopback-cluster-secret\n"
        "RRSTREAM_API_KEYS_FILE=$HOME/.rrstream/api-keys.sha256\n")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LoopbackCluster]:
    reason = _missing()
    if reason:
        pytest.skip(f"loopback cluster: {reason}")
    WORK.mkdir(mode=0o700, exist_ok=True)
    with (WORK.parent / "rrstream-loopback.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pytest.skip("loopback cluster: another run holds it")
        # The Redis the config's GCS keeps its state in (GCS fault tolerance).
        _node_secrets()
        with _sshd(), redis_server(int(REDIS_PORT)) as redis:
            cluster = LoopbackCluster(log=WORK / "ray.log", redis=redis)
            cluster.log.write_text("")
            try:
                _run(BIN / "ray", "up", CONFIG, "-y", "--no-config-cache",
                     log=cluster.log, timeout=1500)
                yield cluster
            finally:
                with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                    cluster.ray_down()
        for path in (WORK / "ray", HAPROXY_DIR, NODE_TMP):
            shutil.rmtree(path, ignore_errors=True)
        for suffix in ("lock", "state"):  # the local provider's record of its nodes
            Path(f"/tmp/ray/cluster-rrstream-loopback.{suffix}").unlink(missing_ok=True)


def test_head_offers_browser_slots_and_starts_with_haproxy(cluster: LoopbackCluster) -> None:
    from ray.util.state import list_nodes

    (node,) = list_nodes(address=DASHBOARD, detail=True)
    assert node.node_ip == HEAD_IP and node.is_head_node
    assert node.resources_total.get("browser") == 2
    raylets = [p for p, name in _cluster_processes().items() if name == "raylet"]
    assert raylets
    for raylet in raylets:
        assert raylet.environ().get("RAY_SERVE_ENABLE_HA_PROXY") == "1"


def test_the_gcs_keeps_its_state_in_redis(cluster: LoopbackCluster) -> None:
    # Ray keeps each GCS table in one hash, RAY<namespace>@<TABLE>: the nodes, the
    # key-value store (where the registry keeps its session records), the actors, ...
    tables = cluster.redis.keys(f"RAY{GCS_NAMESPACE}@*")
    assert tables >= 2, f"the GCS keeps {tables} tables in Redis"
    for raylet in [p for p, name in _cluster_processes().items() if name == "raylet"]:
        assert int(raylet.environ().get("RAY_gcs_rpc_server_reconnect_timeout_s", 0)) >= 120


def test_serve_deploy_streams_a_session_through_haproxy(cluster: LoopbackCluster,
                                                        tmp_path: Path) -> None:
    import serve.app

    serve_config = yaml.safe_load((ROOT / "cluster" / "serve.yaml").read_text())
    module, _, builder = serve_config["applications"][0]["import_path"].partition(":")
    assert module == "serve.app" and hasattr(serve.app, builder), builder
    serve_config["http_options"] = {"host": GATEWAY_HOST, "port": GATEWAY_PORT}
    config_file = tmp_path / "serve.yaml"
    config_file.write_text(yaml.safe_dump(serve_config))
    _run(BIN / "serve", "deploy", config_file, "-a", DASHBOARD, log=cluster.log, timeout=120)

    deadline = time.monotonic() + 180
    status = None
    while status != "RUNNING":
        assert time.monotonic() < deadline, f"application not running: {status}"
        time.sleep(1)
        apps = httpx.get(f"{DASHBOARD}/api/serve/applications/", timeout=10).json()
        status = apps.get("applications", {}).get("rrstream", {}).get("status")
        assert status != "DEPLOY_FAILED", apps["applications"]["rrstream"]["message"]
    assert "haproxy" in _cluster_processes().values(), "no HAProxy ingress"

    base = f"http://{GATEWAY_HOST}:{GATEWAY_PORT}"
    with httpx.Client(base_url=base, timeout=60) as http:
        assert http.get("/sessions").status_code == 401  # auth is required on a cluster
    with httpx.Client(base_url=base, timeout=60, headers={"X-API-Key": API_KEY}) as api:
        session = api.post("/demo/start").raise_for_status().json()
        token = session["view_link"]["token"]
        try:
            deadline = time.monotonic() + 120
            while session["state"] != "running":
                assert session["state"] in {"pending", "starting"}, session
                assert time.monotonic() < deadline, session
                time.sleep(0.5)
                session = api.get(f"/sessions/{session['id']}").raise_for_status().json()
            pool = api.get("/pool").raise_for_status().json()
            assert [n["address"] for n in pool["nodes"]] == [HEAD_IP]
            assert session["id"] in pool["nodes"][0]["sessions"]
            _assert_streams(f"ws://{GATEWAY_HOST}:{GATEWAY_PORT}/sessions/{session['id']}/stream",
                            token)
        finally:
            api.delete(f"/sessions/{session['id']}")


def _assert_streams(url: str, token: str) -> None:
    """A viewer gets `welcome`, then compressed batches (protocol v1)."""
    async def watch() -> None:
        viewer = Viewer(url, acks=False, open_timeout_s=30, token=token)
        async with await viewer.connect() as conn:
            for _ in range(2):
                await conn.next_frame(30)

    asyncio.run(watch())


def test_ray_down_stops_the_cluster(cluster: LoopbackCluster) -> None:
    assert _cluster_processes()
    cluster.ray_down()
    deadline = time.monotonic() + 60
    while left := _cluster_processes():
        assert time.monotonic() < deadline, sorted(left.values())
        time.sleep(0.5)
