"""The load tier: Locust against the stack (local and distributed), and checks that can fail."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from stack_client import free_port
from tests.compose_stack import Stack
from tests.support import ROOT, run, wait_until


def locust(host: str, users: int, duration: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", "locustfile.py", "--headless", "--only-summary",
         "-u", str(users), "-r", str(users), "-t", duration, "--host", host, *extra],
        cwd=ROOT / "loadtest", capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def test_a_20s_run_of_50_users_against_the_stack_is_green(stack: Stack) -> None:
    result = run(
        "make", "load", f"LOAD_HOST={stack.url}", "USERS=50", "SPAWN_RATE=25", "DURATION=20s",
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "result: PASS" in result.stdout
    for check in ("atomicity", "balancing", "errors_and_latency"):
        assert f"PASS {check}" in result.stdout
    assert (ROOT / "loadtest" / "reports" / "report.html").exists()
    assert (ROOT / "loadtest" / "reports" / "stats_stats.csv").exists()


@pytest.fixture
def fake_tally(request: pytest.FixtureRequest) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "load" / "fake_tally.py"), str(port), request.param]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/").status_code == 200, 10, "the fake tally to serve")
        yield url
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize(
    ("fake_tally", "failed_check"),
    [("duplicates", "atomicity"), ("skewed", "balancing")],
    indirect=["fake_tally"],
)
def test_the_checks_fail_the_run_against_a_wrong_server(fake_tally: str, failed_check: str) -> None:
    result = locust(fake_tally, 5, "4s")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"FAIL {failed_check}" in result.stdout
    assert f"result: FAIL ({failed_check})" in result.stdout


def test_a_distributed_run_in_compose_passes_the_same_checks(stack: Stack) -> None:
    env = {
        "LOCUST_HEADLESS": "true",
        "LOCUST_USERS": "30",
        "LOCUST_SPAWN_RATE": "15",
        "LOCUST_RUN_TIME": "15s",
        "LOCUST_PORT": str(free_port()),
    }
    try:
        result = stack.compose(
            "--profile", "loadtest", "up", "--no-deps", "--exit-code-from", "locust-master",
            "locust-master", "locust-worker", check=False, env=env,
        )  # fmt: skip
    finally:
        stack.compose(
            "--profile", "loadtest", "rm", "-fs", "locust-master", "locust-worker", env=env
        )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "result: PASS" in result.stdout
    assert "workers reported: 2" in result.stdout
