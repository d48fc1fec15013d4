"""tally under load: browsers and API clients, then checks that decide the exit code.

Checks (loadtest/checks.py): atomicity (every count distinct, none lost),
balancing (each replica's share of X-Served-By), errors and p99. In distributed
mode each worker sends what it saw to the master, which checks the union.
"""

from __future__ import annotations

import re
import time
from typing import Any

from locust import FastHttpUser, between, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from checks import (
    CHECK_OPTIONS,
    Observations,
    Verdict,
    atomicity,
    balancing,
    errors_and_latency,
    failed,
)
from stack_client import BROWSER, JSON, read_count

MESSAGE = "tally_observations"
COUNT_IN_PAGE = re.compile(r"<output>(\d+)</output>")

seen = Observations()  # this process's users; merged on the master
bounds: dict[str, int] = {}


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    # Users finish the request they are in when the run ends: a request cut off
    # mid-flight may have counted on the server without the run seeing its answer.
    parser.set_defaults(stop_timeout=10)
    group = parser.add_argument_group("tally checks")
    for name, (kind, default, meaning) in CHECK_OPTIONS.items():
        group.add_argument(
            "--" + name.replace("_", "-"), type=kind, default=default,
            env_var=f"TALLY_{name.upper()}", help=f"{meaning} (default {default})",
        )  # fmt: skip


def record(response: Any, value: int) -> None:
    seen.values.append(value)
    seen.served_by[response.headers.get("X-Served-By", "?")] += 1
    seen.increments += 1


class Browser(FastHttpUser):
    """A person in a browser: the welcome page, then counts a visit or two."""

    weight = 1
    wait_time = between(0.05, 0.2)

    @task
    def visit(self) -> None:
        self.client.get("/", headers=BROWSER)
        with self.client.get("/count", headers=BROWSER, catch_response=True) as response:
            match = COUNT_IN_PAGE.search(response.text or "")
            if response.status_code != 200 or match is None:
                response.failure(f"no count in the page (status {response.status_code})")
                return
            record(response, int(match.group(1)))


class ApiClient(FastHttpUser):
    """A program that counts through the JSON API."""

    weight = 3
    wait_time = between(0.01, 0.05)

    @task
    def count(self) -> None:
        with self.client.get("/count", headers=JSON, catch_response=True) as response:
            try:
                value = int(response.json()["count"])
            except (ValueError, KeyError, TypeError):
                response.failure(f"no count in the JSON (status {response.status_code})")
                return
            record(response, value)


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):

        def receive(msg: Any, **_: Any) -> None:
            seen.merge(Observations.from_message(msg.data))
            bounds["reports"] = bounds.get("reports", 0) + 1

        environment.runner.register_message(MESSAGE, receive)


@events.test_start.add_listener
def on_start(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return
    bounds["initial"] = read_count(environment.host or "")
    bounds["workers"] = runner.worker_count if isinstance(runner, MasterRunner) else 0


@events.test_stop.add_listener
def on_stop(environment: Environment, **_: Any) -> None:
    # Fires on each process once its own users have stopped (gracefully, see stop_timeout).
    if isinstance(environment.runner, WorkerRunner):
        # A plain dict: send_message is typed for dict[str, Any], which no TypedDict is.
        environment.runner.send_message(MESSAGE, dict(seen.to_message()))


@events.quitting.add_listener
def on_quitting(environment: Environment, **_: Any) -> None:
    # Locust may fire quitting more than once; each final read would count a visit.
    if isinstance(environment.runner, WorkerRunner) or "initial" not in bounds or "done" in bounds:
        return
    bounds["done"] = 1
    # The master's own test_stop comes before its workers' users have finished,
    # so the final read waits until every worker has sent what it saw.
    deadline = time.monotonic() + 30
    while bounds.get("reports", 0) < bounds["workers"] and time.monotonic() < deadline:
        time.sleep(0.1)  # Locust patched time.sleep into gevent's: messages keep arriving
    final = read_count(environment.host or "")
    options = environment.parsed_options
    assert options is not None, "the checks read their limits from Locust's options"
    total = environment.stats.total
    verdicts = [
        atomicity(seen, bounds["initial"], final),
        balancing(seen.served_by, options.replicas, options.balance_tolerance),
        errors_and_latency(
            total.num_requests,
            total.num_failures,
            total.get_response_time_percentile(0.99) or 0.0,
            options.max_failure_ratio,
            options.max_p99_ms,
        ),
    ]
    if bounds.get("reports", 0) < bounds["workers"]:
        verdicts.append(Verdict("workers_reported", False, "not every worker sent its results"))
    print(summary(environment, verdicts), flush=True)
    if failed(verdicts):
        environment.process_exit_code = 1


def summary(environment: Environment, verdicts: list[Any]) -> str:
    total = environment.stats.total
    served = sum(seen.served_by.values()) or 1
    lines = [
        "",
        "tally load test",
        f"  requests {total.num_requests}, failures {total.num_failures}, "
        f"{total.total_rps:.0f} req/s",
        f"  latency p50 {total.get_response_time_percentile(0.5) or 0:.0f} ms, "
        f"p95 {total.get_response_time_percentile(0.95) or 0:.0f} ms, "
        f"p99 {total.get_response_time_percentile(0.99) or 0:.0f} ms",
        "  share by replica: "
        + ", ".join(f"{name} {n / served:.1%}" for name, n in sorted(seen.served_by.items())),
        *([f"  workers reported: {bounds.get('reports', 0)}"] if bounds.get("workers") else []),
        *(f"  {verdict}" for verdict in verdicts),
        f"  result: {'FAIL (' + ', '.join(failed(verdicts)) + ')' if failed(verdicts) else 'PASS'}",
    ]
    return "\n".join(lines)
