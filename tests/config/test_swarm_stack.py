"""The Swarm stack files: rendered from compose, accepted by `docker stack`, locked down."""

from __future__ import annotations

import os
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT, assert_locked_down, run

SWARM_DIR = ROOT / "ops" / "swarm"
# Each topology's files, as `docker stack deploy -c ... -c ...` takes them.
TOPOLOGIES = {
    "one-node": ("stack.yaml", "observability.yaml"),
    "ha": ("stack-ha.yaml", "observability-ha.yaml"),
}
# What `docker stack deploy` would run, variables filled in with their defaults.
ENV = {key: value for key, value in os.environ.items() if not key.startswith("TALLY_")}


@cache
def stack_config(*files: str) -> dict[str, Any]:
    flags = [arg for name in files for arg in ("-c", str(SWARM_DIR / name))]
    config: dict[str, Any] = yaml.safe_load(
        run("docker", "stack", "config", *flags, env=ENV).stdout
    )
    return config


def service(topology: str, name: str) -> dict[str, Any]:
    resolved: dict[str, Any] = stack_config(*TOPOLOGIES[topology])["services"][name]
    return resolved


# (topology, service) for every service each topology deploys: read from the files
# (not `docker stack config`, which runs when a test asks).
SERVICES = [
    pytest.param(topology, name, id=f"{topology}-{name}")
    for topology, files in TOPOLOGIES.items()
    for name in sorted(
        {n for f in files for n in yaml.safe_load((SWARM_DIR / f).read_text())["services"]}
    )
]


def test_stack_files_are_rendered_from_the_current_compose_files() -> None:
    result = run(sys.executable, "ops/swarm/render.py", "--check", check=False)
    assert result.returncode == 0, result.stderr


def test_docker_stack_accepts_the_core_file_alone_and_with_observability() -> None:
    core = stack_config("stack.yaml")
    assert set(core["services"]) == {"redis", "app", "nginx"}
    observability = {
        "prometheus", "alertmanager", "redis-exporter", "nginx-exporter", "tempo", "grafana",
    }  # fmt: skip
    assert set(stack_config(*TOPOLOGIES["one-node"])["services"]) == set(core["services"]) | (
        observability
    )
    ha = set(stack_config("stack-ha.yaml")["services"])
    nodes_and_sentinels = {"redis-2", "redis-3", "sentinel-1", "sentinel-2", "sentinel-3"}
    assert ha == set(core["services"]) | nodes_and_sentinels
    assert set(stack_config(*TOPOLOGIES["ha"])["services"]) == ha | observability


def test_the_ha_stack_finds_the_primary_through_sentinel() -> None:
    environment = service("ha", "app")["environment"]
    assert environment["REDIS_SENTINELS"] == "sentinel-1:26379,sentinel-2:26379,sentinel-3:26379"
    targets = {c["target"]: c["source"] for c in service("ha", "prometheus")["configs"]}
    ha_targets = yaml.safe_load((ROOT / "ops/prometheus/ha-targets/redis.yml").read_text())
    source = stack_config(*TOPOLOGIES["ha"])["configs"][
        targets["/etc/prometheus/targets/redis.yml"]
    ]
    assert yaml.safe_load(Path(source["file"]).read_text()) == ha_targets


def test_the_app_image_is_versioned_and_named_by_variables() -> None:
    app = yaml.safe_load((SWARM_DIR / "stack.yaml").read_text())["services"]["app"]
    assert app["image"].startswith("${TALLY_IMAGE:-")
    assert ":${TALLY_VERSION:-" in app["image"]
    assert not service("one-node", "app")["image"].endswith(":latest")


@pytest.mark.parametrize(("topology", "name"), SERVICES)
def test_swarm_service_is_locked_down(topology: str, name: str) -> None:
    spec = service(topology, name)
    assert not spec.get("privileged"), "privileged"
    assert_locked_down(name, spec)
    for volume in spec.get("volumes", []):
        assert volume["type"] in ("volume", "tmpfs"), "no bind mount: a node may not have the file"


@pytest.mark.parametrize(("topology", "name"), SERVICES)
def test_swarm_secrets_come_only_from_swarm_secret_files(topology: str, name: str) -> None:
    spec = service(topology, name)
    for variable, value in (spec.get("environment") or {}).items():
        if re.search(r"PASSWORD|SECRET|TOKEN|API_KEY", variable):
            assert variable.endswith("FILE"), f"{variable} carries a secret in the environment"
            assert value.startswith("/run/secrets/")
    secrets = stack_config(*TOPOLOGIES[topology])["secrets"]
    for secret in spec.get("secrets", []):
        assert secret["mode"] == 0o400
        assert secrets[secret["source"]]["external"] is True


INIT = ROOT / "ops" / "secrets" / "init.sh"


def receivers() -> set[str]:
    """Alertmanager's receiver secrets: the names init.sh stores when given one."""
    stored = re.search(r'case "\$1" in\n\s+(.+)\)', INIT.read_text())
    assert stored
    return {name.strip() for name in stored.group(1).split("|")}


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_every_swarm_secret_is_a_file_init_sh_writes(topology: str) -> None:
    init = INIT.read_text()
    for key in set(stack_config(*TOPOLOGIES[topology])["secrets"]) - receivers():
        assert re.search(rf"(^|\s|>){re.escape(key)}(\s|$)", init, re.MULTILINE), key


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_alertmanager_reads_every_receiver_secret_as_its_own_user(topology: str) -> None:
    """The receivers compose's secrets service stores (and render.sh reads), each a Swarm
    secret Alertmanager (nobody) can read, as on compose."""
    secrets = service(topology, "alertmanager")["secrets"]
    assert {secret["source"] for secret in secrets} == receivers()
    for secret in secrets:
        assert (secret["target"], secret["uid"], secret["gid"]) == (
            secret["source"],
            "65534",
            "65534",
        )


@pytest.mark.parametrize(("topology", "name"), SERVICES)
def test_only_nginx_publishes_a_port_in_host_mode_and_every_service_is_dnsrr(
    topology: str, name: str
) -> None:
    spec = service(topology, name)
    ports = spec.get("ports", [])
    if name == "nginx":
        assert [port["mode"] for port in ports] == ["host"]
        assert spec["deploy"]["mode"] == "global"
    else:
        assert not ports
    assert spec["deploy"]["endpoint_mode"] == "dnsrr"


def test_networks_are_overlay_and_the_backend_is_internal_and_not_attachable() -> None:
    networks = stack_config(*TOPOLOGIES["one-node"])["networks"]
    assert {network["driver"] for network in networks.values()} == {"overlay"}
    assert networks["backend"].get("internal") is True
    assert not networks["backend"].get("attachable")


def test_the_app_rolls_out_start_first_and_rolls_back_on_failure() -> None:
    deploy = service("one-node", "app")["deploy"]
    assert deploy["replicas"] == 3
    assert deploy["update_config"]["order"] == "start-first"
    assert deploy["update_config"]["parallelism"] == 1
    assert deploy["update_config"]["failure_action"] == "rollback"
    assert deploy["rollback_config"]["order"] == "start-first"
    for name in ("redis", "app", "nginx"):
        resources = service("one-node", name)["deploy"]["resources"]
        assert {"cpus", "memory"} <= set(resources["limits"]), name
        assert {"cpus", "memory"} <= set(resources["reservations"]), name
