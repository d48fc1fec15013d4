"""The stack's configuration read from its files: copies that must agree with their source."""

from __future__ import annotations

import json
import re

import yaml

from ops.configuration import NGINX_TEMPLATE
from tests.support import ROOT


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
