"""The stack's configuration as its tools read it: `docker compose config` for every profile
and override, and `nginx -t` in the pinned nginx image."""

from __future__ import annotations

import pytest
import yaml

from bench.run import NO_PROBES, SERVICES
from tests.support import ROOT, run


@pytest.mark.parametrize("profile", [None, "dev", "observability"])
def test_compose_config_is_valid_for_every_profile(profile: str | None) -> None:
    flags = ["--profile", profile] if profile else []
    run("docker", "compose", *flags, "config", "-q")


def test_compose_config_is_valid_with_the_ha_topology() -> None:
    run("docker", "compose", "-f", "compose.yaml", "-f", "compose.ha.yaml", "config", "-q")


def test_nginx_accepts_our_config() -> None:
    nginx = ROOT / "ops" / "nginx"
    result = run(
        "docker", "run", "--rm",
        "-v", f"{nginx / 'templates'}:/etc/nginx/templates:ro",
        "-v", f"{nginx / 'snippets'}:/etc/nginx/snippets:ro",
        "-e", "NGINX_RATE_LIMIT=100r/s", "-e", "NGINX_RATE_BURST=200",
        "nginx:1.30", "nginx", "-t",
    )  # fmt: skip
    assert "syntax is ok" in result.stderr
    assert "test is successful" in result.stderr


def test_the_open_loops_control_runs_without_any_probe() -> None:
    """bench/compose.noprobes.yaml turns off every health probe of the stack the bench
    loads, and no service waits for another to be healthy, which none would become."""
    config = yaml.safe_load(
        run(
            "docker", "compose", "-f", "compose.yaml", "-f", "bench/compose.flask.yaml",
            "-f", NO_PROBES, "config", "--no-interpolate", *SERVICES,
        ).stdout
    )  # fmt: skip
    for name in SERVICES:
        service = config["services"][name]
        assert service["healthcheck"].get("disable") is True, name
        for needed, wait in service.get("depends_on", {}).items():
            assert wait["condition"] != "service_healthy", (name, needed)
