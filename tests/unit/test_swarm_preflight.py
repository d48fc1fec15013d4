"""make swarm-up's preflight on the real stack files, against swarms described as data."""

from __future__ import annotations

from typing import Any

import yaml

from ops.swarm.preflight import Node, problems, warnings
from tests.support import ROOT

SWARM = ROOT / "ops" / "swarm"
LABELS = ("tally.redis", "tally.redis-2", "tally.redis-3")


def services(*files: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in files:
        merged.update(yaml.safe_load((SWARM / name).read_text())["services"])
    return merged


def node(name: str, *labels: str, usable: bool = True) -> Node:
    return Node(hostname=name, labels={label: "true" for label in labels}, usable=usable)


def test_a_fresh_single_node_swarm_is_told_the_label_and_the_command() -> None:
    found = problems(services("stack.yaml"), [node("vm")], "tally-app:0.1.0")
    assert found == [
        "swarm-up: no ready node is labelled tally.redis=true (needed by redis):"
        " docker node update --label-add tally.redis=true vm"
    ]


def test_the_ha_stack_on_one_node_needs_its_three_labels_there() -> None:
    found = problems(services("stack-ha.yaml"), [node("vm", "tally.redis")], "tally-app:0.1.0")
    assert [line.split(" (")[0] for line in found] == [
        "swarm-up: no ready node is labelled tally.redis-2=true",
        "swarm-up: no ready node is labelled tally.redis-3=true",
    ]
    assert not problems(services("stack-ha.yaml"), [node("vm", *LABELS)], "tally-app:0.1.0")


def test_a_label_on_a_down_node_does_not_count() -> None:
    nodes = [node("a", "tally.redis", usable=False), node("b"), node("c")]
    assert problems(services("stack.yaml"), nodes, "reg.example:5000/tally-app:0.1.0") == [
        "swarm-up: no ready node is labelled tally.redis=true (needed by redis):"
        " docker node update --label-add tally.redis=true <node>"
    ]


def test_several_nodes_need_the_image_from_a_registry() -> None:
    nodes = [node("a", *LABELS), node("b"), node("c")]
    (line,) = problems(services("stack-ha.yaml"), nodes, "tally-app:0.1.0")
    assert "REGISTRY=host:port make push" in line
    assert not problems(services("stack-ha.yaml"), nodes, "localhost:5000/tally-app:0.1.0")


def test_three_nodes_one_label_each_is_clean_and_two_redis_on_one_host_is_warned() -> None:
    spread = [node("a", LABELS[0]), node("b", LABELS[1]), node("c", LABELS[2])]
    assert not warnings(services("stack-ha.yaml"), spread)
    doubled = [node("a", *LABELS[:2]), node("b", LABELS[2]), node("c")]
    (line,) = warnings(services("stack-ha.yaml"), doubled)
    assert line.startswith("swarm-up: warning: redis, redis-2 can only run on a")
