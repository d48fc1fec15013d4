"""The compose stack built from this repo, under a project name and host port of its own."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from subprocess import CompletedProcess
from typing import Any

import httpx
import pytest

from tests.support import free_port, run

# Grafana and Tempo cannot run on these machines (../shared/sandbox/README.md);
# everything else starts by name.
SERVICES = ("redis", "app", "nginx", "prometheus", "redis-exporter", "nginx-exporter")


class Stack:
    def __init__(self) -> None:
        self.project = f"tally-test-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prometheus = f"http://127.0.0.1:{free_port()}"
        self.env = {
            **os.environ,
            "HTTP_PORT": str(self.port),
            "PROMETHEUS_PORT": self.prometheus.rsplit(":", 1)[1],
            "GRAFANA_PORT": str(free_port()),
        }

    def compose(self, *args: str, check: bool = True) -> CompletedProcess[str]:
        return run(
            "docker", "compose", "-p", self.project, "--profile", "observability", *args,
            check=check, env=self.env,
        )  # fmt: skip

    def up(self, *args: str) -> None:
        self.compose("up", "-d", "--build", "--wait", *args, *SERVICES)

    def containers(self, service: str) -> list[dict[str, str]]:
        out = self.compose("ps", "--format", "json", service).stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [row for row in rows if row["State"] == "running"]

    def redis_cli(self, *args: str) -> CompletedProcess[str]:
        return self.compose(
            "exec", "-T", "redis", "redis-cli", "--no-auth-warning", *args, check=False
        )

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def app_targets_up(self) -> set[str]:
        return {sample["metric"]["instance"] for sample in self.query('up{job="tally"} == 1')}

    def count(self) -> int:
        value: int = httpx.get(f"{self.url}/count", headers={"Accept": "application/json"}).json()[
            "count"
        ]
        return value


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    stack = Stack()
    try:
        stack.up()
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", check=False)
