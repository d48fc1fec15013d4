"""The compose stack built from this repo, under a project name and host port of its own."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from subprocess import CompletedProcess

import httpx
import pytest

from tests.support import free_port, run

# Grafana and Tempo cannot run on these machines (../shared/sandbox/README.md);
# everything else starts by name.
SERVICES = ("redis", "app", "nginx")


class Stack:
    def __init__(self) -> None:
        self.project = f"tally-test-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "HTTP_PORT": str(self.port)}

    def compose(self, *args: str, check: bool = True) -> CompletedProcess[str]:
        return run("docker", "compose", "-p", self.project, *args, check=check, env=self.env)

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
