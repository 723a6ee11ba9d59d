"""cluster/: the `ray up` configs against Ray's own schema, the Serve config against
Serve's, and the facts rrstream relies on (browser slots, the HAProxy ingress).

Nothing here starts Ray or reaches a network: Ray's config preparation only reads the
provider's defaults.yaml from the installed package.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve.schema import ServeDeploySchema

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
RAY_CONFIGS = ["aws.yaml", "local.yaml", "loopback.yaml"]
HAPROXY_ON = "RAY_SERVE_ENABLE_HA_PROXY=1"
WORKERS_AT_NORMAL_PRIORITY = "RAY_worker_niceness=0"
RAY_SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / name).read_text())


def prepared(config: dict[str, Any]) -> dict[str, Any]:
    """The file as written, then what `ray up` validates: the file merged with the
    provider's defaults, both against Ray's ray-schema.json."""
    jsonschema.validate(config, RAY_SCHEMA)
    config = prepare_config(copy.deepcopy(config))
    validate_config(config)
    return config


def start_commands(config: dict[str, Any]) -> list[str]:
    return [*config["head_start_ray_commands"], *config["worker_start_ray_commands"]]


def flag_resources(command: str) -> dict[str, int]:
    """The JSON of a `ray start --resources=...` flag, {} without one."""
    for word in shlex.split(command):
        if word.startswith("--resources="):
            return json.loads(word.removeprefix("--resources="))
    return {}


# -- Ray cluster launcher configs ------------------------------------------------------


@pytest.mark.parametrize("name", RAY_CONFIGS)
def test_ray_config_passes_rays_schema(name: str) -> None:
    config = prepared(load(name))
    assert config["cluster_name"].startswith("rrstream")


@pytest.mark.parametrize(
    ("name", "breakage"),
    [
        ("aws.yaml", lambda c: c["available_node_types"]["browser-worker"]["resources"]
         .update(browser="twelve")),
        ("aws.yaml", lambda c: c.update(head_start_commands=c.pop("head_start_ray_commands"))),
        ("aws.yaml", lambda c: c["available_node_types"]["head"].pop("node_config")),
        ("local.yaml", lambda c: c["head_start_ray_commands"].append(["ray", "start"])),
    ],
    ids=["resource-not-integer", "misspelt-key", "node-type-without-node-config",
         "command-not-a-string"],
)
def test_broken_ray_config_is_refused(name: str, breakage: Any) -> None:
    config = load(name)
    breakage(config)
    with pytest.raises(jsonschema.ValidationError):
        prepared(config)


def test_aws_runs_browsers_on_workers_only() -> None:
    config = prepared(load("aws.yaml"))
    node_types = config["available_node_types"]
    head = node_types[config["head_node_type"]]
    workers = {name: t for name, t in node_types.items() if name != config["head_node_type"]}
    assert head["resources"].get("browser", 0) == 0
    assert workers, "no worker node type"
    for name, node_type in workers.items():
        assert node_type["resources"].get("browser", 0) > 0, f"{name} offers no browser slot"
        # `ray up` passes these to `ray start` as RAY_OVERRIDE_RESOURCES, which wins over
        # a --resources flag; a flag in the shared worker command would only mislead.
        assert node_type["max_workers"] >= node_type["min_workers"] >= 0
    assert not any(flag_resources(c) for c in start_commands(config))


def test_aws_slot_count_fits_the_instance() -> None:
    worker = load("aws.yaml")["available_node_types"]["browser-worker"]
    slots, cpus = worker["resources"]["browser"], worker["resources"]["CPU"]
    assert worker["node_config"]["InstanceType"] == "m6i.2xlarge"  # 8 vCPU, 32 GiB
    assert slots * 0.5 <= cpus - 2  # ~0.5 CPU per session, 2 for Ray and the ingress
    assert slots * 0.4 <= 32 - 6  # ~400 MB per session, ~6 GB for the OS and Ray


@pytest.mark.parametrize(("name", "head_slots", "worker_slots"),
                         [("local.yaml", 0, 12), ("loopback.yaml", 2, 2)])
def test_local_provider_declares_slots_in_ray_start(
    name: str, head_slots: int, worker_slots: int
) -> None:
    # The local provider has a single node type whose resources Ray detects: the
    # `browser` slots exist only through the `ray start` flags.
    config = prepared(load(name))
    head = [flag_resources(c) for c in config["head_start_ray_commands"] if "ray start" in c]
    workers = [flag_resources(c) for c in config["worker_start_ray_commands"]
               if "ray start" in c]
    assert [r.get("browser", 0) for r in head] == [head_slots]
    assert [r.get("browser", 0) for r in workers] == [worker_slots]


@pytest.mark.parametrize("name", RAY_CONFIGS)
def test_every_ray_start_enables_the_haproxy_ingress_and_normal_priority(name: str) -> None:
    config = load(name)
    starts = [c for c in start_commands(config) if "ray start" in c]
    assert len(starts) == 2
    for command in starts:
        for setting in (HAPROXY_ON, WORKERS_AT_NORMAL_PRIORITY):
            assert setting in command
            assert command.index(setting) < command.index("ray start"), command


@pytest.mark.parametrize("name", RAY_CONFIGS)
def test_setup_ships_and_builds_the_checkout(name: str) -> None:
    config = load(name)
    assert list(config["file_mounts"].values())[0] == "."
    assert ".gitignore" in config["rsync_filter"]  # not .venv, node_modules, dist
    setup = "\n".join(config["setup_commands"])
    if name == "loopback.yaml":
        assert "scripts/setup.sh" in setup
    else:
        assert "pip install -q -e ." in setup
        assert "playwright install --with-deps chromium" in setup
        assert "npm ci" in setup and "node build.mjs" in setup


def test_only_loopback_pins_ray_to_loopback() -> None:
    for name in ("aws.yaml", "local.yaml"):
        assert "--node-ip-address" not in " ".join(start_commands(load(name)))
    loopback = load("loopback.yaml")
    assert loopback["provider"]["head_ip"] == "127.0.0.2"
    assert loopback["provider"]["worker_ips"] == []
    assert "--node-ip-address=127.0.0.2" in " ".join(loopback["head_start_ray_commands"])


def env_settings(command: str) -> dict[str, str]:
    """The VAR=value words before `ray start` in a start command."""
    words = shlex.split(command[:command.index("ray start")].replace(";", " "))
    return dict(w.split("=", 1) for w in words if re.fullmatch(r"[A-Za-z_]\w*=.*", w))


def ray_starts(config: dict[str, Any], key: str) -> list[str]:
    return [c for c in config[key] if "ray start" in c]


@pytest.mark.parametrize("name", RAY_CONFIGS)
def test_the_head_keeps_the_gcs_in_redis(name: str) -> None:
    # GCS fault tolerance: the head's GCS writes its tables to an external Redis, under a
    # prefix of this cluster's own, and a restarted GCS reads them back.
    (head,) = ray_starts(load(name), "head_start_ray_commands")
    env = env_settings(head)
    host, _, port = env.get("RAY_REDIS_ADDRESS", "").removeprefix("rediss://").rpartition(":")
    assert host and port.isdigit(), f"{name}: no RAY_REDIS_ADDRESS=host:port for the head"
    assert env.get("RAY_external_storage_namespace"), name
    assert "--block" not in head  # `ray up` returns once the head runs (README: systemd)


def test_each_cluster_has_its_own_gcs_namespace() -> None:
    namespaces = [env_settings(ray_starts(load(n), "head_start_ray_commands")[0])
                  ["RAY_external_storage_namespace"] for n in RAY_CONFIGS]
    assert len(set(namespaces)) == len(namespaces), namespaces


@pytest.mark.parametrize("name", RAY_CONFIGS)
def test_every_raylet_rides_out_a_gcs_restart(name: str) -> None:
    config = load(name)
    for command in ray_starts(config, "head_start_ray_commands") + ray_starts(
            config, "worker_start_ray_commands"):
        env = env_settings(command)
        # Ray's default is 60 s: a supervisor restarting the head's Ray (cluster/README.md)
        # must fit in well within it, or every node exits and its sessions with it.
        assert int(env.get("RAY_gcs_rpc_server_reconnect_timeout_s", 60)) >= 120, command
    for command in ray_starts(config, "worker_start_ray_commands"):
        assert "RAY_REDIS_ADDRESS" not in env_settings(command)  # only the GCS talks to it


def test_loopback_keeps_the_gcs_in_a_loopback_redis() -> None:
    (head,) = ray_starts(load("loopback.yaml"), "head_start_ray_commands")
    host, port = env_settings(head)["RAY_REDIS_ADDRESS"].split(":")
    # tests/integration/test_local_cluster.py starts that Redis, on a port clear of Ray's
    # worker ports (10002-19999) and of the ephemeral range.
    assert host == "127.0.0.1" and 20000 <= int(port) < 32768


def test_haproxy_socket_paths_fit_haproxys_limit() -> None:
    # Serve puts the sockets under <dir>/<56-character node id>/; HAProxy refuses
    # socket paths over 97 bytes.
    command = " ".join(load("loopback.yaml")["head_start_ray_commands"])
    for variable in ("RAY_SERVE_HAPROXY_SOCKET_PATH", "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"):
        path = Path(re.search(rf"{variable}=(\S+)", command).group(1))
        assert len(f"{path.parent}/{'x' * 56}/{path.name}") <= 97, path


# -- Serve config ----------------------------------------------------------------------


def test_serve_config_passes_serves_schema() -> None:
    config = ServeDeploySchema.model_validate(load("serve.yaml"))
    assert config.http_options.host == "0.0.0.0"
    assert config.http_options.port == 8000
    (app,) = config.applications
    assert (app.name, app.route_prefix, app.import_path) == ("rrstream", "/",
                                                              "serve.app:build_app")
    (deployment,) = app.deployments
    assert deployment.max_ongoing_requests >= 1_000  # one slot per open WebSocket
    # When a replica dies its viewers reconnect to the other (test_gateway_failover.py);
    # the local run has one (RRSTREAM_GATEWAY_REPLICAS defaults to 1).
    assert deployment.num_replicas == 2


def test_the_local_run_has_one_gateway_replica() -> None:
    from pipeline.config import Settings

    assert Settings.model_fields["gateway_replicas"].default == 1


def test_broken_serve_config_is_refused() -> None:
    config = load("serve.yaml")
    config["applications"][0]["deployments"][0]["max_ongoing_requests"] = "lots"
    with pytest.raises(ValueError):
        ServeDeploySchema.model_validate(config)


def test_serve_config_names_the_gateway_deployment() -> None:
    from serve.gateway import Gateway

    (app,) = load("serve.yaml")["applications"]
    assert [d["name"] for d in app["deployments"]] == [Gateway.name]


def test_serve_config_builds_the_gateway() -> None:
    from ray.serve import Application

    import serve.app

    module, _, attribute = load("serve.yaml")["applications"][0]["import_path"].partition(":")
    assert module == "serve.app"
    builder = getattr(serve.app, attribute, None)
    assert builder is not None, f"serve/app.py has no {attribute}() (see cluster/README.md)"
    app = builder(load("serve.yaml")["applications"][0]["args"])
    assert isinstance(app, Application)


# -- Dockerfile --------------------------------------------------------------------------


def test_dockerfile_copies_what_exists() -> None:
    text = (CLUSTER / "Dockerfile").read_text()
    sources = [
        word
        for line in text.splitlines() if line.startswith("COPY ") and "--from=" not in line
        for word in shlex.split(line)[1:-1] if not word.startswith("--")
    ]
    assert sources
    ignore = CLUSTER / "Dockerfile.dockerignore"  # BuildKit's per-Dockerfile ignore file
    patterns = [line for line in ignore.read_text().splitlines()
                if line and not line.startswith("#")]
    assert ".venv" in patterns and "**/node_modules" in patterns
    for source in sources:
        assert (ROOT / source).exists(), source
        parts = Path(source).parts
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        assert not [p for p in patterns for prefix in prefixes
                    if fnmatch.fnmatch(prefix, p.removeprefix("**/"))], source
    assert 'ENTRYPOINT ["rrstream"]' in text
    assert 'CMD ["up", "--host", "0.0.0.0"]' in text


@pytest.mark.parametrize("name", RAY_CONFIGS)
def test_every_node_loads_the_access_secrets_before_ray_start(name: str) -> None:
    config = load(name)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        command = " ".join(config[key])
        load_secrets = ". ~/.rrstream/secrets.env"
        assert load_secrets in command and command.index(load_secrets) < command.index(
            "ray start"), (key, command)
    if name != "loopback.yaml":  # the loopback test writes the node's own
        mounts = config["file_mounts"]
        assert "~/.rrstream/secrets.env" in mounts.values()
        assert "~/.rrstream/api-keys.sha256" in mounts.values()


def test_the_serve_config_requires_auth() -> None:
    config = yaml.safe_load((CLUSTER / "serve.yaml").read_text())
    assert config["applications"][0]["args"]["auth"] == "required"
