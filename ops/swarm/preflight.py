"""Checks a swarm before `make swarm-up` deploys to it, and waits a bounded time for the stack.

A deploy that cannot converge waits for ever on Swarm ("no suitable node"), so what can
be known before deploying is checked first, each failure one line that says what to run:
the engine is a swarm manager; every service's placement constraint (the node labels of
ops/swarm/swarm.yaml) is met by a ready, active node; on a swarm of several nodes the app
image comes from a registry (`REGISTRY=... make push`), since a locally built image exists
on this node only. Then `wait` polls the deployed services until every one runs all its
tasks, and stops at a deadline naming the services that did not, with Swarm's reason.

    uv run python ops/swarm/preflight.py check -c ops/swarm/stack.yaml [-c ...]
    uv run python ops/swarm/preflight.py wait tally    # SWARM_UP_TIMEOUT seconds (300)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from ops import configuration  # noqa: E402

# `node.labels.KEY == VALUE` / `!=`: the constraints swarm.yaml writes.
CONSTRAINT = re.compile(r"^node\.labels\.(?P<key>[\w.-]+)\s*(?P<op>==|!=)\s*(?P<value>\S+)$")
STACK_LABEL = "com.docker.stack.namespace"
WAIT_DEFAULT = 300.0
# A task Swarm cannot place says so in its error; seen this long, waiting longer cannot help.
UNPLACEABLE = "no suitable node"
UNPLACEABLE_FOR = 30.0
POLL = 2.0


@dataclass(frozen=True)
class Node:
    hostname: str
    labels: Mapping[str, str]
    usable: bool  # ready and active: the scheduler may put tasks there


def docker(*args: str) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"swarm-up: docker {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def constraints(service: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    written = service.get("deploy", {}).get("placement", {}).get("constraints", [])
    parsed = []
    for constraint in written:
        match = CONSTRAINT.match(constraint)
        if match:
            parsed.append((match["key"], match["op"], match["value"]))
    return parsed


def fits(node: Node, wanted: Iterable[tuple[str, str, str]]) -> bool:
    return all((node.labels.get(key) == value) == (op == "==") for key, op, value in wanted)


def has_registry(image: str) -> bool:
    """Whether an image name starts with a registry host (as docker reads names)."""
    first, _, rest = image.partition("/")
    return bool(rest) and ("." in first or ":" in first or first == "localhost")


def problems(services: Mapping[str, Mapping[str, Any]], nodes: list[Node], image: str) -> list[str]:
    """What would keep the stack from converging, one line each, with the command that fixes it."""
    usable = [node for node in nodes if node.usable]
    found: list[str] = []
    missing: dict[tuple[str, str], list[str]] = {}
    for name, service in sorted(services.items()):
        wanted = constraints(service)
        if wanted and not any(fits(node, wanted) for node in usable):
            for key, op, value in wanted:
                if op == "==" and not any(node.labels.get(key) == value for node in usable):
                    missing.setdefault((key, value), []).append(name)
    target = usable[0].hostname if len(usable) == 1 else "<node>"
    for (key, value), names in missing.items():
        found.append(
            f"swarm-up: no ready node is labelled {key}={value} (needed by {', '.join(names)}):"
            f" docker node update --label-add {key}={value} {target}"
        )
    if len(nodes) > 1 and not has_registry(image):
        found.append(
            f"swarm-up: this swarm has {len(nodes)} nodes and the app image {image} exists only"
            " where it was built: REGISTRY=host:port make push, then REGISTRY=host:port make"
            " swarm-up"
        )
    return found


def warnings(services: Mapping[str, Mapping[str, Any]], nodes: list[Node]) -> list[str]:
    """Placements that work but lose what several nodes are for: two Redis nodes on one host."""
    usable = [node for node in nodes if node.usable]
    if len(usable) < 2:
        return []
    found = []
    for node in usable:
        pinned = sorted(
            name for name, service in services.items()
            if (wanted := constraints(service)) and all(
                op == "==" and node.labels.get(key) == value for key, op, value in wanted
            ) and not any(fits(other, wanted) for other in usable if other is not node)
            and name.startswith("redis")
        )  # fmt: skip
        if len(pinned) > 1:
            found.append(
                f"swarm-up: warning: {', '.join(pinned)} can only run on {node.hostname}:"
                " losing that node loses them all; label one node each"
            )
    return found


def swarm_nodes() -> list[Node]:
    info = json.loads(docker("info", "--format", "{{json .Swarm}}"))
    if info.get("LocalNodeState") != "active":
        raise SystemExit(
            "swarm-up: this Docker engine is not in a swarm: docker swarm init (or join one) first"
        )
    if not info.get("ControlAvailable"):
        raise SystemExit(
            "swarm-up: this node is not a swarm manager: run it on a manager"
            " (`docker node ls` there lists them) or point DOCKER_HOST at one"
        )
    ids = docker("node", "ls", "-q").split()
    return [
        Node(
            hostname=node["Description"]["Hostname"],
            labels=node["Spec"].get("Labels") or {},
            usable=node["Status"]["State"] == "ready" and node["Spec"]["Availability"] == "active",
        )
        for node in json.loads(docker("node", "inspect", *ids))
    ]


def check(files: list[str]) -> int:
    services: dict[str, Any] = {}
    for path in files:
        services.update(yaml.safe_load(Path(path).read_text())["services"])
    nodes = swarm_nodes()
    for line in warnings(services, nodes):
        print(line, file=sys.stderr)
    found = problems(services, nodes, configuration.app_image(os.environ))
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


def pending(stack: str) -> dict[str, str]:
    """Each service of the stack that does not run all its tasks yet: name -> "running/wanted"."""
    out = docker(
        "service", "ls", "--filter", f"label={STACK_LABEL}={stack}",
        "--format", "{{.Name}} {{.Replicas}}",
    )  # fmt: skip
    behind = {}
    for line in out.splitlines():
        name, replicas = line.split(" ", 1)
        running, wanted = replicas.split(" ")[0].split("/")
        if running != wanted:
            behind[name] = f"{running}/{wanted}"
    return behind


def reason(service: str) -> str:
    """Why the service's newest task is not running, in Swarm's words."""
    out = docker(
        "service", "ps", service, "--no-trunc", "--filter", "desired-state=running",
        "--format", "{{.CurrentState}}|{{.Error}}",
    )  # fmt: skip
    lines = [line for line in out.splitlines() if line]
    if not lines:
        return "no task yet"
    state, _, error = lines[0].partition("|")
    return f"{state.strip()}{': ' + error.strip() if error.strip() else ''}"


def wait(stack: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    unplaceable_since: float | None = None
    while True:
        behind = pending(stack)
        if not behind:
            print(f"swarm-up: every service of {stack} runs all its tasks")
            return 0
        reasons = {name: reason(name) for name in behind}
        stuck = any(UNPLACEABLE in why for why in reasons.values())
        now = time.monotonic()
        unplaceable_since = (unplaceable_since or now) if stuck else None
        if now >= deadline or (unplaceable_since and now - unplaceable_since >= UNPLACEABLE_FOR):
            waited = timeout - max(0.0, deadline - now)
            for name, why in sorted(reasons.items()):
                print(
                    f"swarm-up: {name} {behind[name]} after {waited:.0f} s: {why}", file=sys.stderr
                )
            return 1
        time.sleep(POLL)


def main() -> int:
    parser = argparse.ArgumentParser(prog="preflight.py")
    commands = parser.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("check")
    checking.add_argument("-c", dest="files", action="append", required=True)
    waiting = commands.add_parser("wait")
    waiting.add_argument("stack")
    args = parser.parse_args()
    if args.command == "check":
        return check(args.files)
    timeout = os.environ.get("SWARM_UP_TIMEOUT") or str(WAIT_DEFAULT)
    try:
        seconds = float(timeout)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise SystemExit(f"swarm-up: SWARM_UP_TIMEOUT must be a positive number, got {timeout!r}")
    return wait(args.stack, seconds)


if __name__ == "__main__":
    sys.exit(main())
