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
        return run(
            "docker", "image", "inspect", "-f", "{{.Id}}", f"{self.image}:{tag}"
        ).stdout.strip()


@pytest.fixture(scope="module")
def ops_stack() -> Iterator[OperatedStack]:
    stack = OperatedStack()
    with stack:
        wait_until(lambda: steady(stack.url), 60, "every replica ready")
        yield stack


def test_deploy_to_a_new_tag_fails_no_request_and_replaces_every_replica(
    ops_stack: OperatedStack,
) -> None:
    tag = {"TALLY_VERSION": "0.1.0-deploy"}
    # Built before the load: the deploy's own build is then a cache hit. A build under load
    # on this shared 2-core machine starves Redis's clients into 503s that are the
    # machine's, not the deploy's.
    ops_stack.compose("build", "app", env=tag)
    before = ops_stack.replicas()
    with under_load(ops_stack.url) as loads:
        result = ops_stack.make("deploy", env=tag)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    row = loads.row("make deploy, 3 replicas to a new tag")
    after = ops_stack.replicas()
    new_image = ops_stack.image_id("0.1.0-deploy")
    assert len(after) == len(before) == 3
    assert {r["image"] for r in after} == {new_image}
    assert not {r["hostname"] for r in after} & {r["hostname"] for r in before}
    assert_clean(row, loads)
    # The load's last answers all came from the new replicas.
    last = [a.served_by for a in loads.strict.attempts[-30:]]
    assert set(last) <= {r["hostname"] for r in after}, last


def test_a_deploy_whose_replica_never_turns_healthy_stops_and_the_old_ones_serve(
    ops_stack: OperatedStack,
) -> None:
    broken = {"TALLY_VERSION": "0.1.0-broken", "REDIS_TIMEOUT": "abc"}  # the app exits 78
    ops_stack.compose("build", "app", env=broken)
    before = ops_stack.replicas()
    with under_load(ops_stack.url) as loads:
        result = ops_stack.make("deploy", env=broken)
    print(result.stdout, result.stderr)
    assert result.returncode != 0
    [line] = [line for line in result.stderr.splitlines() if line.startswith("deploy failed")]
    assert "exited" in line, line
    assert "old replicas keep serving" in line
    assert "REDIS_TIMEOUT" in line  # the app's own one line, naming the variable
    row = loads.row("make deploy of a replica that exits 78")
    assert_clean(row, loads)
    assert sorted(map(str, ops_stack.replicas())) == sorted(map(str, before))
    served = {a.served_by for a in loads.strict.attempts[-30:]}
    assert served <= {r["hostname"] for r in before}, served


def test_nginx_reload_fails_no_request(ops_stack: OperatedStack) -> None:
    with under_load(ops_stack.url) as loads:
        result = ops_stack.make("nginx-reload")
    assert result.returncode == 0, result.stderr
    assert "reloaded" in result.stdout
    assert_clean(loads.row("make nginx-reload"), loads)


USERS = {  # each Redis user and its secret file
    "app": "redis_app_password",
    "exporter": "redis_exporter_password",
    "replication": "redis_replication_password",
    "sentinel": "redis_sentinel_password",
}


def password(stack: Stack, name: str) -> str:
    """A secret file as Redis's container sees it (read as root there, never printed)."""
    return stack.compose("exec", "-T", "redis", "cat", f"/run/secrets/{name}").stdout.strip()


def logs_in(stack: Stack, user: str, secret: str, service: str = "redis") -> bool:
    """Whether `user` logs in to `service` with `secret` (sent on stdin, not in argv)."""
    script = 'read -r p; REDISCLI_AUTH="$p" redis-cli --no-auth-warning --user "$1" ping'
    answer = stack.compose(
        "exec", "-T", service, "sh", "-c", script, "-", user, input=secret + "\n", check=False
    ).stdout
    return answer.strip() == "PONG"


def assert_rotated(stack: Stack, old: dict[str, str], services: tuple[str, ...]) -> None:
    for user, name in USERS.items():
        new = password(stack, name)
        assert new != old[user], user
        for service in services:
            assert logs_in(stack, user, new, service), (user, service, "new refused")
            assert not logs_in(stack, user, old[user], service), (user, service, "old works")


def test_rotate_secrets_fails_no_request_and_the_old_passwords_stop_working(
    ops_stack: OperatedStack,
) -> None:
    old = {user: password(ops_stack, name) for user, name in USERS.items()}
    assert all(logs_in(ops_stack, user, secret) for user, secret in old.items())
    with under_load(ops_stack.url) as loads:
        result = ops_stack.make("rotate-secrets")
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    row = loads.row("make rotate-secrets (4 users)")
    new = [password(ops_stack, name) for name in USERS.values()]
    assert not any(secret in result.stdout + result.stderr for secret in [*old.values(), *new])
    assert_rotated(ops_stack, old, ("redis",))
    assert_clean(row, loads)
