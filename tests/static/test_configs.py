"""Static checks of the stack's configuration: compose for every profile, nginx -t."""

from __future__ import annotations

import pytest

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
