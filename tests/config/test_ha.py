"""The HA topology's numbers and names agree wherever they are written: compose.ha.yaml
(the app's settings, the services), ops/redis/ha.conf and ops/redis/sentinel.conf."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import yaml

from tests.support import ROOT, run


@cache
def services(*files: str) -> dict[str, Any]:
    """The services as compose resolves `files` (run once per set, when a test asks)."""
    args = [arg for path in files for arg in ("-f", path)]
    out = run("docker", "compose", *args, "--profile", "observability", "config",
              "--format", "json").stdout  # fmt: skip
    resolved: dict[str, Any] = json.loads(out)["services"]
    return resolved


def ha_services() -> dict[str, Any]:
    return services("compose.yaml", "compose.ha.yaml")


def app() -> dict[str, str]:
    environment: dict[str, str] = ha_services()["app"]["environment"]
    return environment


def directive(path: str, name: str) -> list[str]:
    """The words after `name` on the one line of an ops/redis config file that starts with it."""
    lines = (ROOT / "ops" / "redis" / path).read_text().splitlines()
    found = [line.split()[len(name.split()) :] for line in lines if line.startswith(name + " ")]
    assert len(found) == 1, f"{path}: {name} set {len(found)} times"
    return found[0]


MONITOR = directive("sentinel.conf", "sentinel monitor")  # name, first primary, port, quorum


def test_the_app_waits_for_as_many_replicas_as_the_primary_requires() -> None:
    assert app()["REDIS_WAIT_REPLICAS"] == directive("ha.conf", "min-replicas-to-write")[0]


def test_the_app_asks_for_the_primary_the_sentinels_monitor() -> None:
    name, first, port, _ = MONITOR
    assert app()["REDIS_SENTINEL_SERVICE"] == name
    assert first in ha_services()
    assert port == "6379"
    for service in ha_services().values():
        for word in re.findall(r"ckquorum (\S+)", json.dumps(service.get("healthcheck", {}))):
            assert word == name


def test_the_app_knows_every_sentinel_and_the_nodes_know_every_node() -> None:
    sentinels = {s for s in ha_services() if s.startswith("sentinel-")}
    nodes = {s for s in ha_services() if re.fullmatch(r"redis(-\d+)?", s)}
    assert {entry.split(":")[0] for entry in app()["REDIS_SENTINELS"].split(",")} == sentinels
    for name in (*sentinels, *nodes):
        environment = ha_services()[name]["environment"]
        assert environment["REDIS_SENTINELS"] == app()["REDIS_SENTINELS"]
        assert set(environment["REDIS_NODES"].split()) == nodes


def test_the_quorum_is_a_majority_of_the_sentinels() -> None:
    sentinels = [s for s in ha_services() if s.startswith("sentinel-")]
    assert int(MONITOR[3]) == len(sentinels) // 2 + 1


def test_a_replica_can_be_lost_without_stopping_writes() -> None:
    replicas = len([s for s in ha_services() if re.fullmatch(r"redis(-\d+)?", s)]) - 1
    assert replicas > int(directive("ha.conf", "min-replicas-to-write")[0])


def scraped(path: str) -> set[str]:
    """The node names in a Prometheus targets file: redis://exporter@NAME:PORT."""
    groups = yaml.safe_load((ROOT / path).read_text()) or []
    return {re.sub(r"^redis://[^@]*@|:\d+$", "", t) for g in groups for t in g["targets"]}


def test_prometheus_scrapes_every_node_and_sentinel_of_each_topology() -> None:
    ha_nodes = {s for s in ha_services() if re.fullmatch(r"redis(-\d+)?", s)}
    ha_sentinels = {s for s in ha_services() if s.startswith("sentinel-")}
    assert scraped("ops/prometheus/ha-targets/redis.yml") == ha_nodes
    assert scraped("ops/prometheus/ha-targets/sentinel.yml") == ha_sentinels
    one_node = services("compose.yaml")
    assert scraped("ops/prometheus/targets/redis.yml") == {"redis"} <= set(one_node)
    assert scraped("ops/prometheus/targets/sentinel.yml") == set()
    mounts = {v["target"]: v["source"] for v in ha_services()["prometheus"]["volumes"]}
    assert mounts["/etc/prometheus/targets"].endswith("ops/prometheus/ha-targets")
