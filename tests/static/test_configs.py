"""Static checks of the stack's configuration: compose for every profile, nginx -t."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from bench.run import NO_PROBES, SERVICES
from ops.configuration import NGINX_TEMPLATE
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


def test_the_flask_baseline_probes_as_the_app_image_does() -> None:
    """bench/compose.flask.yaml copies the Dockerfile's HEALTHCHECK (the Flask image has
    none), so the baseline pays the same for its probes; the copies must agree."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    options = dict(re.findall(r"--([a-z-]+)=(\S+)", dockerfile.split("HEALTHCHECK", 1)[1]))
    command = re.search(r"CMD (\[.*?\])\n", dockerfile.split("HEALTHCHECK", 1)[1])
    override = yaml.safe_load((ROOT / "bench" / "compose.flask.yaml").read_text())
    check = override["services"]["app"]["healthcheck"]
    assert command is not None
    assert check["test"] == ["CMD", *json.loads(command.group(1))]
    assert {
        "interval": check["interval"],
        "timeout": check["timeout"],
        "start-period": check["start_period"],
        "retries": str(check["retries"]),
    } == options


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


def test_nginx_retires_its_upstream_connections_before_hypercorn_would() -> None:
    """A connection Hypercorn closes on its own (idle, or after so many requests) is one
    nginx may be sending the next request on; so nginx's limits come first."""
    from service.__main__ import hypercorn_config
    from service.settings import Settings

    template = NGINX_TEMPLATE.read_text()
    upstream = re.search(r"upstream app \{(.*?)\n\}", template, re.S)
    assert upstream, "no upstream block in the nginx template"
    requests = int(re.search(r"keepalive_requests (\d+);", upstream.group(1)).group(1))  # type: ignore[union-attr]
    idle = int(re.search(r"keepalive_timeout (\d+)s;", upstream.group(1)).group(1))  # type: ignore[union-attr]
    config = hypercorn_config(Settings())
    assert config.keep_alive_max_requests >= requests
    assert config.keep_alive_timeout > idle
