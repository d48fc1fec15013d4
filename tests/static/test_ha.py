"""The HA topology's numbers and names agree wherever they are written: compose.ha.yaml
(the app's settings, the services), ops/redis/ha.conf and ops/redis/sentinel.conf."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support import ROOT, run


def ha_config() -> dict[str, Any]:
    out = run("docker", "compose", "-f", "compose.yaml", "-f", "compose.ha.yaml", "config",
              "--format", "json").stdout  # fmt: skip
    config: dict[str, Any] = json.loads(out)
    return config


def directive(path: str, name: str) -> list[str]:
    """The words after `name` on the one line of an ops/redis config file that starts with it."""
    lines = (ROOT / "ops" / "redis" / path).read_text().splitlines()
    found = [line.split()[len(name.split()) :] for line in lines if line.startswith(name + " ")]
    assert len(found) == 1, f"{path}: {name} set {len(found)} times"
    return found[0]


CONFIG = ha_config()
SERVICES = CONFIG["services"]
APP = SERVICES["app"]["environment"]
MONITOR = directive("sentinel.conf", "sentinel monitor")  # name, first primary, port, quorum


def test_the_app_waits_for_as_many_replicas_as_the_primary_requires() -> None:
    assert APP["REDIS_WAIT_REPLICAS"] == directive("ha.conf", "min-replicas-to-write")[0]


def test_the_app_asks_for_the_primary_the_sentinels_monitor() -> None:
    name, first, port, _ = MONITOR
    assert APP["REDIS_SENTINEL_SERVICE"] == name
    assert first in SERVICES
    assert port == "6379"
    for service in SERVICES.values():
        for word in re.findall(r"ckquorum (\S+)", json.dumps(service.get("healthcheck", {}))):
            assert word == name


def test_the_app_knows_every_sentinel_and_the_nodes_know_every_node() -> None:
    sentinels = {s for s in SERVICES if s.startswith("sentinel-")}
    nodes = {s for s in SERVICES if re.fullmatch(r"redis(-\d+)?", s)}
    assert {entry.split(":")[0] for entry in APP["REDIS_SENTINELS"].split(",")} == sentinels
    for name in (*sentinels, *nodes):
        environment = SERVICES[name]["environment"]
        assert environment["REDIS_SENTINELS"] == APP["REDIS_SENTINELS"]
        assert set(environment["REDIS_NODES"].split()) == nodes


def test_the_quorum_is_a_majority_of_the_sentinels() -> None:
    sentinels = [s for s in SERVICES if s.startswith("sentinel-")]
    assert int(MONITOR[3]) == len(sentinels) // 2 + 1


def test_a_replica_can_be_lost_without_stopping_writes() -> None:
    replicas = len([s for s in SERVICES if re.fullmatch(r"redis(-\d+)?", s)]) - 1
    assert replicas > int(directive("ha.conf", "min-replicas-to-write")[0])
