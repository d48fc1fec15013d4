"""The Swarm stack from ops/swarm/, deployed on this node under a stack name and port of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from stack_client import free_port
from tests.faults.harness import Load, Row
from tests.support import ROOT, app_image, run, wait_until

# Attempts on each side of a fault: the load really ran across it (a count, not a rate).
MIN_ATTEMPTS = 50
STACK_FILES = ("ops/swarm/stack.yaml", "ops/swarm/observability.yaml")
HA_STACK_FILES = ("ops/swarm/stack-ha.yaml",)
# Grafana and Tempo do not run on the CI machines (no image for them there): their
# services are removed right after each deploy; their configuration is checked statically.
CANNOT_RUN_HERE = ("grafana", "tempo")
NODE_LABELS = ("tally.redis", "tally.redis-2", "tally.redis-3", "tally.observability")
STACK_LABEL = "com.docker.stack.namespace"
SERVICE_LABEL = "com.docker.swarm.service.name"


def swarm_state() -> str:
    return run("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()


@dataclass
class Swarm:
    """This node as a swarm manager; undone only as far as this run did it."""

    joined: bool = False
    labels_added: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.node = ""

    def enter(self) -> None:
        if swarm_state() == "inactive":
            run("docker", "swarm", "init", "--advertise-addr", "127.0.0.1")
            self.joined = True
        self.node = run("docker", "info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
        labels = json.loads(
            run("docker", "node", "inspect", self.node, "--format", "{{json .Spec.Labels}}").stdout
        )
        for label in NODE_LABELS:
            if (labels or {}).get(label) != "true":
                run("docker", "node", "update", "--label-add", f"{label}=true", self.node)
                self.labels_added.append(label)

    def leave(self) -> None:
        for label in self.labels_added:
            run("docker", "node", "update", "--label-rm", label, self.node, check=False)
        if self.joined:
            run("docker", "swarm", "leave", "--force", check=False)


class SwarmStack:
    def __init__(self, files: tuple[str, ...] = STACK_FILES) -> None:
        self.files = files
        self.name = f"tally-test-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.image = app_image()
        self.env = {
            **os.environ,
            "TALLY_STACK": self.name,
            "HTTP_PORT": str(self.port),
            # All test traffic comes from one address; the limit has its own compose test.
            "NGINX_RATE_LIMIT": "100000r/s",
            "NGINX_RATE_BURST": "100000",
        }
        self.extra_images: list[str] = []

    def service(self, name: str) -> str:
        return f"{self.name}_{name}"

    def start(self) -> None:
        run("docker", "compose", "build", "app", env=self.env)
        run(sys.executable, "ops/swarm/secrets.py", env=self.env)
        self.deploy()

    def deploy(self) -> None:
        files = [arg for path in self.files for arg in ("-c", str(ROOT / path))]
        run(
            "docker", "stack", "deploy", "--resolve-image", "never", *files, self.name, env=self.env
        )
        deployed = self.services()
        cannot_run = [self.service(s) for s in CANNOT_RUN_HERE if self.service(s) in deployed]
        if cannot_run:
            run("docker", "service", "rm", *cannot_run)
        wait_until(self.converged, 180, f"every service of {self.name} running")
        wait_until(self.ready, 60, "/readyz through nginx")

    def services(self) -> dict[str, str]:
        """Each service's replicas as `docker service ls` shows them ("3/3")."""
        out = run(
            "docker", "service", "ls", "--filter", f"label={STACK_LABEL}={self.name}",
            "--format", "{{.Name}} {{.Replicas}}",
        ).stdout  # fmt: skip
        return dict(line.split(" ", 1) for line in out.splitlines())

    def converged(self) -> bool:
        services = self.services()
        return bool(services) and all(
            replicas.split("/")[0] == replicas.split("/")[1].split(" ")[0]
            for replicas in services.values()
        )

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200

    def remove(self) -> None:
        run("docker", "stack", "rm", self.name, check=False)
        # Everything the stack made is gone before the next deploy or the volume removal.
        wait_until(lambda: not self._leftovers(), 120, f"{self.name} removed")

    def _leftovers(self) -> list[str]:
        label = f"label={STACK_LABEL}={self.name}"
        containers = run("docker", "ps", "-aq", "--filter", label).stdout.split()
        networks = run("docker", "network", "ls", "-q", "--filter", label).stdout.split()
        return containers + networks

    def destroy(self) -> None:
        """The stack, its volumes, its secrets and the images the tests built."""
        self.remove()
        volumes = run(
            "docker", "volume", "ls", "-q", "--filter", f"label={STACK_LABEL}={self.name}"
        ).stdout.split()
        if volumes:
            run("docker", "volume", "rm", *volumes, check=False)
        run(sys.executable, "ops/swarm/secrets.py", "--remove", env=self.env)
        if self.extra_images:
            run("docker", "rmi", *self.extra_images, check=False)

    def containers(self, service: str) -> list[str]:
        """The running containers of a service: their short ids are the replica ids."""
        out = run(
            "docker", "ps", "-q", "--filter", f"label={SERVICE_LABEL}={self.service(service)}",
            "--filter", "status=running",
        ).stdout  # fmt: skip
        return out.split()

    def tasks(self, service: str) -> set[str]:
        """Ids of the tasks Swarm wants running now."""
        out = run(
            "docker", "service", "ps", self.service(service), "-q",
            "--filter", "desired-state=running",
        ).stdout  # fmt: skip
        return set(out.split())

    def running_tasks(self, service: str) -> list[dict[str, Any]]:
        ids = self.tasks(service)
        if not ids:
            return []
        tasks: list[dict[str, Any]] = json.loads(run("docker", "inspect", *ids).stdout)
        return [task for task in tasks if task["Status"]["State"] == "running"]

    def update_state(self, service: str) -> str:
        out = run(
            "docker", "service", "inspect", self.service(service),
            "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
        ).stdout  # fmt: skip
        return out.strip()

    def service_image(self, service: str) -> str:
        out = run(
            "docker", "service", "inspect", self.service(service),
            "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        ).stdout  # fmt: skip
        return out.strip()

    def build_image(self, tag: str, dockerfile: str) -> str:
        """An image derived from the app image (`dockerfile` on stdin, FROM ${BASE});
        removed with the stack."""
        image = f"{self.image}-{tag}"
        result = subprocess.run(
            ["docker", "build", "-q", "-t", image, "--build-arg", f"BASE={self.image}", "-"],
            input=dockerfile, capture_output=True, text=True, cwd=ROOT, check=False, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        self.extra_images.append(image)
        return image

    def ask(self, service: str, port: int, path: str) -> str:
        """GET `path` from a service's own port, inside its task (nothing is published)."""
        container = self.containers(service)[0]
        url = f"http://127.0.0.1:{port}{path}"
        return run("docker", "exec", container, "wget", "-qO-", url).stdout

    def prometheus(self, expr: str) -> list[dict[str, Any]]:
        """An instant query, asked inside Prometheus's task (its UI is not published)."""
        query = urllib.parse.urlencode({"query": expr})
        out = self.ask("prometheus", 9090, f"/api/v1/query?{query}")
        result: list[dict[str, Any]] = json.loads(out)["data"]["result"]
        return result

    def wait_for_update(self, service: str, final: str, timeout: float) -> float:
        """Poll the service's update until it reaches `final`; return when it did."""
        wait_until(
            lambda: self.update_state(service) == final,
            timeout,
            f"{self.service(service)} update state {final}",
            interval=0.5,
        )
        return time.monotonic()


def assert_counted_once(row: Row, load: Load, fault_at: float) -> None:
    """Every request got its 200 in the end (retried with its key), the load ran on both
    sides of the fault, and every request counted exactly once."""
    assert load.unresolved == 0
    before, since = load.attempts_around(fault_at)
    assert before >= MIN_ATTEMPTS, f"load too light: {before} attempts before the fault"
    assert since >= MIN_ATTEMPTS, f"load too light: {since} attempts after the fault"
    assert row.lost == 0
    assert row.double_counted == 0


def assert_exact(row: Row, load: Load, fault_at: float) -> None:
    """Counted once, and no request failed: a replica's 503 (Redis slow for a moment on a
    busy node, not the rollout's doing) carries Retry-After and is retried by contract
    with the same key; anything else is a failure."""
    answered = [a for a in load.attempts if a.status != 200]
    retryable = [a for a in answered if a.status == 503 and a.served_by and a.retry_after]
    assert answered == retryable, load.failures(fault_at)
    assert_counted_once(row, load, fault_at)
