"""The Swarm stack files: rendered from compose, accepted by `docker stack`, locked down."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import pytest
import yaml

from tests.support import ROOT, assert_locked_down, run

SWARM_DIR = ROOT / "ops" / "swarm"
FILES = ("stack.yaml", "observability.yaml")
# What `docker stack deploy` would run, variables filled in with their defaults.
ENV = {key: value for key, value in os.environ.items() if not key.startswith("TALLY_")}


def stack_config(*files: str) -> dict[str, Any]:
    flags = [arg for name in files for arg in ("-c", str(SWARM_DIR / name))]
    config: dict[str, Any] = yaml.safe_load(
        run("docker", "stack", "config", *flags, env=ENV).stdout
    )
    return config


CONFIG = stack_config(*FILES)
SERVICES: dict[str, dict[str, Any]] = CONFIG["services"]


def test_stack_files_are_rendered_from_the_current_compose_files() -> None:
    result = run(sys.executable, "ops/swarm/render.py", "--check", check=False)
    assert result.returncode == 0, result.stderr


def test_docker_stack_accepts_the_core_file_alone_and_with_observability() -> None:
    core = stack_config("stack.yaml")
    assert set(core["services"]) == {"redis", "app", "nginx"}
    assert set(SERVICES) == {
        "redis", "app", "nginx", "prometheus", "alertmanager", "redis-exporter",
        "nginx-exporter", "tempo", "grafana",
    }  # fmt: skip


def test_the_app_image_is_versioned_and_named_by_variables() -> None:
    app = yaml.safe_load((SWARM_DIR / "stack.yaml").read_text())["services"]["app"]
    assert app["image"].startswith("${TALLY_IMAGE:-")
    assert ":${TALLY_VERSION:-" in app["image"]
    assert not SERVICES["app"]["image"].endswith(":latest")


def test_make_push_names_the_image_as_compose_does() -> None:
    compose_default = re.search(r"\$\{TALLY_IMAGE:-([^}]+)\}", (ROOT / "compose.yaml").read_text())
    assert compose_default is not None
    assert f"$(REGISTRY)/{compose_default[1]}" in (ROOT / "Makefile").read_text()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_swarm_service_is_locked_down(name: str) -> None:
    service = SERVICES[name]
    assert not service.get("privileged"), "privileged"
    assert_locked_down(name, service)
    for volume in service.get("volumes", []):
        assert volume["type"] in ("volume", "tmpfs"), "no bind mount: a node may not have the file"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_swarm_secrets_come_only_from_swarm_secret_files(name: str) -> None:
    for variable, value in (SERVICES[name].get("environment") or {}).items():
        if re.search(r"PASSWORD|SECRET|TOKEN|API_KEY", variable):
            assert variable.endswith("FILE"), f"{variable} carries a secret in the environment"
            assert value.startswith("/run/secrets/")
    for secret in SERVICES[name].get("secrets", []):
        assert secret["mode"] == 0o400
        assert CONFIG["secrets"][secret["source"]]["external"] is True


def test_every_swarm_secret_is_a_file_init_sh_writes() -> None:
    init = (ROOT / "ops" / "secrets" / "init.sh").read_text()
    for key in CONFIG["secrets"]:
        assert re.search(rf"(^|\s|>){re.escape(key)}(\s|$)", init, re.MULTILINE), key


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_only_nginx_publishes_a_port_in_host_mode_and_every_service_is_dnsrr(name: str) -> None:
    service = SERVICES[name]
    ports = service.get("ports", [])
    if name == "nginx":
        assert [port["mode"] for port in ports] == ["host"]
        assert service["deploy"]["mode"] == "global"
    else:
        assert not ports
    assert service["deploy"]["endpoint_mode"] == "dnsrr"


def test_networks_are_overlay_and_the_backend_is_internal_and_not_attachable() -> None:
    networks = CONFIG["networks"]
    assert {network["driver"] for network in networks.values()} == {"overlay"}
    assert networks["backend"].get("internal") is True
    assert not networks["backend"].get("attachable")


def test_the_app_rolls_out_start_first_and_rolls_back_on_failure() -> None:
    deploy = SERVICES["app"]["deploy"]
    assert deploy["replicas"] == 3
    assert deploy["update_config"]["order"] == "start-first"
    assert deploy["update_config"]["parallelism"] == 1
    assert deploy["update_config"]["failure_action"] == "rollback"
    assert deploy["rollback_config"]["order"] == "start-first"
    for name in ("redis", "app", "nginx"):
        resources = SERVICES[name]["deploy"]["resources"]
        assert {"cpus", "memory"} <= set(resources["limits"]), name
        assert {"cpus", "memory"} <= set(resources["reservations"]), name


def test_readme_shows_the_swarm_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in ("make swarm-up", "make swarm-down", "docker stack deploy", "make push"):
        assert command in readme, command
