"""The stack's configuration as its tools read it: `docker compose config` for every profile
and override, and `nginx -t` in the pinned nginx image."""

from __future__ import annotations

import os

import pytest
import yaml

from bench.run import APP_IMAGE, FASTAPI, HIREDIS, NO_PROBES, SERVICES, UNCOALESCED, UVICORN
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


def test_the_fastapi_rows_override_is_valid() -> None:
    run("docker", "compose", "-f", "compose.yaml", "-f", FASTAPI, "config", "-q")


def test_the_uncoalesced_row_is_tally_as_shipped_with_one_setting_off() -> None:
    compose = ["docker", "compose", "-f", "compose.yaml"]
    app = yaml.safe_load(run(*compose, "-f", UNCOALESCED, "config", "app").stdout)
    app = app["services"]["app"]
    shipped = yaml.safe_load(run(*compose, "config", "app").stdout)["services"]["app"]
    assert app.pop("environment").pop("REDIS_COALESCE") == "false"
    shipped.pop("environment").pop("REDIS_COALESCE", None)
    assert app == shipped


@pytest.mark.parametrize("override", [UVICORN, HIREDIS])
def test_the_rows_that_change_one_thing_extend_the_image_the_bench_measures(
    override: str,
) -> None:
    """bench/compose.uvicorn.yaml and bench/compose.hiredis.yaml build FROM the app image
    bench/run.py measures (which they must be told), adding their packages to it; the
    uvicorn row serves the ASGI app `python -m service` would, the hiredis row runs the
    image's own command."""
    without = {name: value for name, value in os.environ.items() if name != "BENCH_APP_IMAGE"}
    unset = run(
        "docker", "compose", "-f", "compose.yaml", "-f", override, "config", "-q",
        check=False, env=without,
    )  # fmt: skip
    assert unset.returncode != 0
    assert "BENCH_APP_IMAGE" in unset.stderr
    env = {**os.environ, "BENCH_APP_IMAGE": APP_IMAGE}
    compose = ["docker", "compose", "-f", "compose.yaml"]
    app = yaml.safe_load(run(*compose, "-f", override, "config", "app", env=env).stdout)
    app = app["services"]["app"]
    shipped = yaml.safe_load(run(*compose, "config", "app").stdout)["services"]["app"]
    assert app["build"]["args"]["TALLY_APP_IMAGE"] == APP_IMAGE
    assert app["build"]["args"]["PACKAGES"]
    assert app["image"] != shipped["image"]
    if override == UVICORN:
        assert app["command"][:2] == ["uvicorn", "service.asgi:app"]
    else:
        assert app.get("command") == shipped.get("command")
    dockerfile = (ROOT / app["build"]["context"] / "Dockerfile").read_text()
    assert "FROM ${TALLY_APP_IMAGE}" in dockerfile
