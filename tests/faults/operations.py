"""An operation (a deploy, a reload, a rotation) under two loads through nginx at once,
and its accounting: a client that never retries (every non-200 or dropped connection is a
failed request, as a browser or plain curl would show it) and the harness's keyed client
that retries with its Idempotency-Key, for the exact count."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from subprocess import CompletedProcess

from stack_client import read_count
from tests.compose_stack import CoreStack, Stack
from tests.faults.harness import MIN_ATTEMPTS, READ_RETRY, Load
from tests.support import run


@dataclass
class OperationRow:
    operation: str
    requests: int
    failed: int  # non-200 answers and dropped connections the non-retrying client saw
    retried: int  # attempts the keyed client retried (its non-200s)
    lost: int
    double_counted: int
    seconds: float  # how long the operation itself took

    def cells(self) -> list[str]:
        return [
            self.operation, str(self.requests), str(self.failed), str(self.retried),
            str(self.lost), str(self.double_counted), f"{self.seconds:.1f}",
        ]  # fmt: skip


HEADER = ["operation", "requests", "failed", "retried", "lost", "double-counted", "took (s)"]
ROWS: list[OperationRow] = []


@dataclass
class Loads:
    url: str
    strict: Load = field(init=False)
    keyed: Load = field(init=False)
    operation_s: float = 0.0

    def __post_init__(self) -> None:
        self.strict = Load(self.url, concurrency=4, retry=False)
        self.keyed = Load(self.url, concurrency=4)

    def failures(self) -> list[str]:
        return self.strict.failures(self.strict.started)

    def row(self, operation: str) -> OperationRow:
        """Every answered request's value once, and the counter moved by exactly them from
        the strict load's first read (the keyed load's first read and the final read are
        one increment each)."""
        end = read_count(self.url, retry_for=READ_RETRY)
        values = [*self.strict.acked.values(), *self.keyed.acked.values()]
        expected = self.strict.start_count + len(values) + 2
        duplicates = sum(n - 1 for n in Counter(values).values() if n > 1)
        failed = [a for a in self.strict.attempts if a.status != 200]
        # A failed request may have been counted once (a 503 means once or not at all).
        unanswered = len(failed)
        return OperationRow(
            operation=operation,
            requests=len(values) + self.strict.unresolved + self.keyed.unresolved,
            failed=len(failed),
            retried=sum(1 for a in self.keyed.attempts if a.status != 200),
            lost=max(0, expected - end),
            double_counted=duplicates + max(0, end - expected - unanswered),
            seconds=self.operation_s,
        )


@contextmanager
def under_load(url: str) -> Iterator[Loads]:
    """Both loads running before the body starts and after it ends (MIN_ATTEMPTS each
    side); the body is the operation, timed."""
    loads = Loads(url)
    with loads.strict, loads.keyed:
        loads.strict.run_past(loads.strict.started, 1)
        began = time.monotonic()
        yield loads
        ended = time.monotonic()
        loads.operation_s = ended - began
        loads.strict.run_past(ended, 1)
        assert loads.strict.attempts_around(began)[0] >= MIN_ATTEMPTS, "load too light before"


def assert_clean(row: OperationRow, loads: Loads) -> None:
    """Recorded, then: nothing the operation dropped or nginx failed (a 502, a 504, a
    connection cut), every request of the keyed client answered, none lost or counted
    twice. A replica's own 503 with Retry-After is the Redis-timeout contract, not the
    operation's doing: a starved event loop misses REDIS_TIMEOUT now and then with or
    without an operation; those are counted in the row's `failed`, and allowed."""
    ROWS.append(row)
    dropped = [
        a for a in loads.strict.attempts
        if a.status != 200
        and not (a.status == 503 and a.served_by and a.retry_after)
    ]  # fmt: skip
    assert not dropped, loads.failures()
    assert loads.keyed.unresolved == 0
    assert row.lost == 0
    assert row.double_counted == 0


class Operated(Stack):
    """A stack under an app image name of its own, so that the tags its deploys build
    touch no one else's image, and what the operations' tests ask of it."""

    def __init__(self) -> None:
        super().__init__()
        self.image = f"tally-test-{uuid.uuid4().hex[:8]}"
        self.env = {**self.env, "TALLY_IMAGE": self.image, "COMPOSE_PROJECT_NAME": self.project}

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
        reference = f"{self.image}:{tag}"
        return run("docker", "image", "inspect", "-f", "{{.Id}}", reference).stdout.strip()


class OperatedStack(Operated, CoreStack):
    """The core stack: Redis, three replicas, nginx."""


def assert_deployed(stack: Operated, operation: str) -> list[dict[str, str]]:
    """`make deploy` to a new tag under load: it succeeded, nothing failed (assert_clean),
    and every replica was replaced by one of the new image, which the load's last answers
    all came from. The replicas after it are returned."""
    tag = {"TALLY_VERSION": "0.1.0-deploy"}
    # Built before the load: the deploy's own build is then a cache hit. A build under load
    # on this shared 2-core machine starves Redis's clients into 503s that are the
    # machine's, not the deploy's.
    stack.compose("build", "app", env=tag)
    before = stack.replicas()
    with under_load(stack.url) as loads:
        result = stack.make("deploy", env=tag)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    row = loads.row(operation)
    after = stack.replicas()
    assert len(after) == len(before)
    assert {r["image"] for r in after} == {stack.image_id("0.1.0-deploy")}
    assert not {r["hostname"] for r in after} & {r["hostname"] for r in before}
    assert_clean(row, loads)
    last = [a.served_by for a in loads.strict.attempts[-30:]]
    assert set(last) <= {r["hostname"] for r in after}, last
    return after


USERS = {  # each Redis user and its secret file
    "app": "redis_app_password",
    "exporter": "redis_exporter_password",
    "replication": "redis_replication_password",
    "sentinel": "redis_sentinel_password",
    "backup": "redis_backup_password",
}


def password(stack: Stack, name: str) -> str:
    """A secret file as Redis's container sees it (read as root there, never printed)."""
    return stack.compose("exec", "-T", "redis", "cat", f"/run/secrets/{name}").stdout.strip()


def logs_in(stack: Stack, user: str, secret: str, service: str = "redis") -> bool:
    """Whether `user` logs in to `service` (a Sentinel's port when its name says so) with
    `secret`, sent on stdin rather than in any command line."""
    port = "26379" if service.startswith("sentinel") else "6379"
    script = 'read -r p; REDISCLI_AUTH="$p" redis-cli --no-auth-warning -p "$2" --user "$1" ping'
    answer = stack.compose(
        "exec", "-T", service, "sh", "-c", script, "-", user, port,
        input=secret + "\n", check=False,
    ).stdout  # fmt: skip
    return answer.strip() == "PONG"


def sentinel_users(stack: Stack, service: str) -> set[str]:
    """The users a Sentinel has, as the secrets service wrote them for it (a Sentinel has
    no replication or backup user: neither ever talks to one)."""
    conf = stack.compose("exec", "-T", service, "cat", "/run/secrets/sentinel_auth.conf").stdout
    return {line.split()[1] for line in conf.splitlines() if line.startswith("user ")}


def assert_rotated(stack: Stack, old: dict[str, str], services: tuple[str, ...]) -> None:
    """Each user's password changed; on each service that has the user, the new one logs
    in and the old does not."""
    has = {s: sentinel_users(stack, s) for s in services if s.startswith("sentinel")}
    assert all({"app", "exporter", "sentinel"} <= users for users in has.values()), has
    for user, name in USERS.items():
        new = password(stack, name)
        assert new != old[user], user
        for service in services:
            if service in has and user not in has[service]:
                continue
            assert logs_in(stack, user, new, service), (user, service, "new refused")
            assert not logs_in(stack, user, old[user], service), (user, service, "old works")
