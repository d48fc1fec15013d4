"""Hardening of every service in every profile, as `docker compose config` resolves it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.support import ROOT, assert_locked_down, run

PROFILES = ("observability", "loadtest", "dev", "backup")
# The HA topology's override (README "Redis failover"): its services are checked too.
HA = "compose.ha.yaml"


def declared_services() -> list[str]:
    """The service names in compose.yaml and the files it includes, read as YAML: collection
    runs no command (a test below checks them against what compose resolves)."""
    main = yaml.safe_load((ROOT / "compose.yaml").read_text())
    names = set(main["services"])
    for included in [*main.get("include", []), HA]:
        names |= set(yaml.safe_load((ROOT / included).read_text())["services"])
    return sorted(names)


NAMES = declared_services()


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    """Every service of every profile as `docker compose config` resolves it, and those
    compose.ha.yaml adds (the ones it overrides keep the core's hardening)."""
    flags = [arg for profile in PROFILES for arg in ("--profile", profile)]

    def resolved(*files: str) -> dict[str, dict[str, Any]]:
        files_ = [arg for name in files for arg in ("-f", name)]
        out = run("docker", "compose", *files_, *flags, "config", "--format", "json").stdout
        result: dict[str, dict[str, Any]] = json.loads(out)["services"]
        return result

    return {**resolved("compose.yaml", HA), **resolved("compose.yaml")}


def test_every_declared_service_is_checked(services: dict[str, dict[str, Any]]) -> None:
    assert sorted(services) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_service_is_locked_down(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    assert not service.get("privileged"), "privileged"
    assert "no-new-privileges:true" in service.get("security_opt", [])
    assert_locked_down(name, service)


@pytest.mark.parametrize("name", NAMES)
def test_only_nginx_is_published_beyond_loopback(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    for port in services[name].get("ports", []):
        if name != "nginx":
            assert port.get("host_ip") == "127.0.0.1", port


@pytest.mark.parametrize("name", NAMES)
def test_secrets_come_only_from_files(services: dict[str, dict[str, Any]], name: str) -> None:
    for variable, value in (services[name].get("environment") or {}).items():
        if re.search(r"PASSWORD|SECRET|TOKEN|API_KEY", variable) and not variable.endswith("FILE"):
            assert not value, f"{variable} carries a secret in the environment"


@pytest.mark.parametrize("name", NAMES)
def test_logs_are_bounded_alike(services: dict[str, dict[str, Any]], name: str) -> None:
    """Docker's json-file log has no limit unless told; the options are written in each
    file's shared block (an anchor does not cross files), and must agree with the app's."""
    logging = services[name].get("logging")
    assert logging == services["app"]["logging"], logging
    assert logging["driver"] == "json-file"
    assert set(logging["options"]) >= {"max-size", "max-file"}
