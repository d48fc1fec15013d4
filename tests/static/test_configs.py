"""Static checks of the stack's configuration: compose for every profile, nginx -t."""

from __future__ import annotations

import re

import pytest

from tests.support import ROOT, run


@pytest.mark.parametrize("profile", [None, "dev", "observability"])
def test_compose_config_is_valid_for_every_profile(profile: str | None) -> None:
    flags = ["--profile", profile] if profile else []
    run("docker", "compose", *flags, "config", "-q")


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


def test_compose_defaults_agree_with_env_example() -> None:
    """Each `${NAME:-default}` in compose.yaml is the value .env.example gives NAME (the
    sampling ratio, the TTL, ...). An empty value there is the app's own default, unset,
    which compose may fill (it points the exporter at Tempo)."""
    example = dict(
        re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", (ROOT / ".env.example").read_text(), re.M)
    )
    compose = (ROOT / "compose.yaml").read_text()
    defaults = re.findall(r"\$\{([A-Z][A-Z0-9_]+):-([^}]*)\}", compose)
    assert any(name == "OTEL_TRACES_SAMPLER_ARG" for name, _ in defaults)
    for name, default in defaults:
        if example.get(name):
            assert default == example[name], (
                f"{name}: compose {default!r}, .env.example {example[name]!r}"
            )
