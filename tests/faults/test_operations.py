"""Operating tally under load through nginx: `make deploy` to a new image tag, a deploy
whose new replicas never turn healthy, `make nginx-reload`, `make rotate-secrets`. Each
with no failed request for a client that never retries, and the count exact."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import steady
from tests.faults.operations import (
    USERS,
    OperatedStack,
    assert_clean,
    assert_deployed,
    assert_rotated,
    logs_in,
    password,
    under_load,
)
from tests.support import wait_until


@pytest.fixture(scope="module")
def ops_stack() -> Iterator[OperatedStack]:
    stack = OperatedStack()
    with stack:
        wait_until(lambda: steady(stack.url), 60, "every replica ready")
        yield stack


def test_deploy_to_a_new_tag_fails_no_request_and_replaces_every_replica(
    ops_stack: OperatedStack,
) -> None:
    assert len(assert_deployed(ops_stack, "make deploy, 3 replicas to a new tag")) == 3


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
        for _ in range(3):  # each reload retires the workers the one before started
            result = ops_stack.make("nginx-reload")
            assert result.returncode == 0, result.stderr
            assert "reloaded" in result.stdout
            loads.strict.run_for(1)
    assert_clean(loads.row("make nginx-reload x3"), loads)


def test_rotate_secrets_fails_no_request_and_the_old_passwords_stop_working(
    ops_stack: OperatedStack,
) -> None:
    old = {user: password(ops_stack, name) for user, name in USERS.items()}
    assert all(logs_in(ops_stack, user, secret) for user, secret in old.items())
    with under_load(ops_stack.url) as loads:
        result = ops_stack.make("rotate-secrets")
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    row = loads.row(f"make rotate-secrets ({len(USERS)} users)")
    new = [password(ops_stack, name) for name in USERS.values()]
    assert not any(secret in result.stdout + result.stderr for secret in [*old.values(), *new])
    assert_rotated(ops_stack, old, ("redis",))
    assert_clean(row, loads)
