"""Operating tally under load through nginx: `make deploy` to a new image tag, a deploy
whose new replicas never turn healthy, `make nginx-reload`, `make rotate-secrets`. Each
with no failed request for a client that never retries, and the count exact."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from subprocess import CompletedProcess

import pytest

from tests.compose_stack import Stack
from tests.faults.harness import steady
from tests.faults.operations import assert_clean, under_load
from tests.support import run, wait_until


class OperatedStack(Stack):
    """The core stack (Redis, three replicas, nginx) under an app image name of its own,
    so that the tags its deploys build touch no one else's image."""

    services = ("redis", "app", "nginx")

    def __init__(self) -> None:
        super().__init__()
        self.image = f"tally-test-{uuid.uuid4().hex[:8]}"
        self.env = {**self.env, "TALLY_IMAGE": self.image, "COMPOSE_PROJECT_NAME": self.project}

    def start(self) -> None:
        self.compose("build", "app")
        self.compose("up", "-d", "--wait", "redis")
        self.up()

    def stop(self, *args: str) -> None:
        super().stop(*args)
        tags = run("docker", "images", "-q", self.image, check=False).stdout.split()
        if tags:
            run("docker", "rmi", "-f", *set(tags), check=False)

    def make(self, *target: str, env: Mapping[str, str] | None = None) -> CompletedProcess[str]:
        return run("make", "--no-print-directory", *target, check=False,
                   env={**self.env, **(env or {})}, timeout=900)  # fmt: skip

    def replicas(self) -> list[dict[str, str]]:
        """Each running replica's hostname (its X-Served-By) and image id."""
        ids = [row["ID"] for row in self.containers("app")]
        found = json.loads(run("docker", "inspect", *ids).stdout)
        return [{"hostname": c["Config"]["Hostname"], "image": c["Image"]} for c in found]

    def image_id(self, tag: str) -> str:
        return run("docker", "image", "inspect", "-f", "{{.Id}}", f"{self.image}:{tag}").stdout.strip()


@pytest.fixture(scope="module")
def ops_stack() -> Iterator[OperatedStack]:
    with OperatedStack() as stack:
        wait_until(lambda: steady(stack.url), 60, "every replica ready")
        yield stack


def test_deploy_to_a_new_tag_fails_no_request_and_replaces_every_replica(
    ops_stack: OperatedStack,
) -> None:
    before = ops_stack.replicas()
    with under_load(ops_stack.url) as loads:
        result = ops_stack.make("deploy", env={"TALLY_VERSION": "0.1.0-deploy"})
    assert result.returncode == 0, result.stdout + result.stderr
    row = loads.row("make deploy, 3 replicas to a new tag")
    after = ops_stack.replicas()
    new_image = ops_stack.image_id("0.1.0-deploy")
    assert len(after) == len(before) == 3
    assert {r["image"] for r in after} == {new_image}
    assert not {r["hostname"] for r in after} & {r["hostname"] for r in before}
    # The load's last answers all came from the new replicas.
    last = [a.served_by for a in loads.strict.attempts[-30:]]
    assert set(last) <= {r["hostname"] for r in after}, last
    assert_clean(row, loads)
