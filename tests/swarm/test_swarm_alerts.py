"""Alertmanager sends on Swarm: its webhook receiver switched on as an operator does it
(`ops/swarm/secrets.py --set`, a Swarm secret), and a real alert from the stack's
Prometheus reaching the webhook double."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.stack.alert_receiver import PORT
from tests.support import ROOT, run, wait_until
from tests.swarm.swarm_stack import SwarmStack

RECEIVER = ROOT / "tests" / "stack" / "alert_receiver.py"
# TallyRedisDown's `for` (30 s), a scrape and an evaluation, the page route's group wait
# (30 s), and Alertmanager's task replaced for the new secret, with room for this busy
# machine: a deadline to poll, not a timing assertion.
DEADLINE = 600
# How far back the failure report reads each series: the deadline and two minutes more.
LOOKBACK = f"{DEADLINE // 60 + 2}m"
# The labels that tell a timeline's series apart (redis_instance_info has a dozen).
SHOWN_LABELS = ("instance", "role", "alertstate")


@pytest.fixture
def receiver(swarm_stack: SwarmStack) -> Iterator[str]:
    """The webhook double as a service on the stack's backend network; its name, which
    resolves there to its task."""
    name = f"{swarm_stack.name}-alert-receiver"
    try:
        # Not the app: the image's healthcheck is not its own.
        run(
            "docker", "service", "create", "--quiet", "--detach", "--name", name,
            "--network", swarm_stack.service("backend"), "--endpoint-mode", "dnsrr",
            "--no-healthcheck", "--read-only", "--user", "10001", "--cap-drop", "ALL",
            "--mount", f"type=bind,source={RECEIVER},target=/receiver.py,readonly",
            swarm_stack.image, "python", "/receiver.py",
        )  # fmt: skip
        wait_until(lambda: running(name), 60, f"{name} running")
        yield name
    finally:
        run("docker", "service", "rm", name, check=False)
        # Off the stack's network before the stack goes, or its removal waits on it.
        wait_until(lambda: not containers(name), 60, f"{name} removed")


def containers(service: str) -> list[str]:
    label = f"label=com.docker.swarm.service.name={service}"
    return run("docker", "ps", "-aq", "--filter", label).stdout.split()


def running(service: str) -> bool:
    out = run(
        "docker", "service", "ps", service, "--filter", "desired-state=running",
        "--format", "{{.CurrentState}}",
    ).stdout  # fmt: skip
    return out.startswith("Running")


def set_webhook(stack: SwarmStack, url: str) -> str:
    result = subprocess.run(
        [sys.executable, "ops/swarm/secrets.py", "--set", "alertmanager_webhook_url"],
        input=url, capture_output=True, text=True, cwd=ROOT, check=False,
        env={**os.environ, "TALLY_STACK": stack.name}, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def notifications(service: str) -> list[dict[str, Any]]:
    out = run("docker", "service", "logs", "--raw", service).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def firing(service: str, alertname: str) -> dict[str, Any] | None:
    for notification in notifications(service):
        for alert in notification["alerts"]:
            if alert["labels"]["alertname"] == alertname and alert["status"] == "firing":
                found: dict[str, Any] = notification
                return found
    return None


def test_a_webhook_secret_set_on_swarm_gets_prometheus_alert(
    swarm_stack: SwarmStack, receiver: str, alert_paths: list[list[str]]
) -> None:
    started = time.time()
    out = set_webhook(swarm_stack, f"http://{receiver}:{PORT}/\n")
    assert "restarted with it" in out
    wait_until(swarm_stack.converged, 120, "Alertmanager running again with its secret")
    # The exporter gone is Redis unseen: TallyRedisDown pages, and nothing is served less.
    exporter = swarm_stack.service("redis-exporter")
    scaled_at = time.time()
    run("docker", "service", "scale", "--detach", f"{exporter}=0")
    try:
        try:
            found = wait_until(
                lambda: firing(receiver, "TallyRedisDown"),
                DEADLINE,
                "TallyRedisDown at the webhook double",
                interval=2,
            )
        except AssertionError as exc:
            path = path_of_the_alert(swarm_stack, receiver, scaled_at)
            raise AssertionError(f"{exc}\n{path}") from None
        paged_at = time.time()
        assert found is not None
        assert found["receiver"] == "page"
        alert_paths.append(way_to_the_page(swarm_stack, started, scaled_at, paged_at))
    finally:
        # The webhook stays set: its double goes with this test, and the stack with the tier.
        run("docker", "service", "scale", "--detach", f"{exporter}=1")


def way_to_the_page(
    stack: SwarmStack, started: float, scaled_at: float, paged_at: float
) -> list[str]:
    """The results table's row: how long the secret took, then each hop of the alert after
    the exporter was scaled to 0, read back from Prometheus (the webhook's time is the
    poll's that saw it, up to 2 s late). The scrape's `up` is given as each change, and
    the primary's series by its last sample: a slow page says there which hop it was."""

    def samples(selector: str) -> list[tuple[float, str]]:
        return sorted(
            (float(at), value)
            for series in stack.prometheus(f"{selector}[{LOOKBACK}]")
            for at, value in series["values"]
            if float(at) >= scaled_at
        )

    def after(at: float | None) -> str:
        return "-" if at is None else f"{at - scaled_at:.1f}"

    up = [f"{value} at {after(at)}" for at, value in transitions(samples('up{job="redis"}'))]
    primary = samples('redis_instance_info{job="redis", role="master"}')
    pending = samples('ALERTS{alertname="TallyRedisDown", alertstate="pending"}')
    firing = samples('ALERTS{alertname="TallyRedisDown", alertstate="firing"}')
    return [
        "TallyRedisDown (redis_exporter scaled to 0)",
        f"{scaled_at - started:.1f}",
        ", ".join(up) or "-",
        after(primary[-1][0] if primary else None),
        after(pending[0][0] if pending else None),
        after(firing[0][0] if firing else None),
        after(paged_at),
    ]


def path_of_the_alert(stack: SwarmStack, receiver: str, scaled_at: float) -> str:
    """For a failure: where the alert got to, hop by hop, and when (the exporter's scrapes,
    Prometheus's rule, the Alertmanagers it sends to, Alertmanager's alerts and log, what
    the double received)."""
    parts = [f"the exporter scaled to 0 at {clock(scaled_at)}"]
    hops: tuple[tuple[str, Callable[[], object]], ...] = (
        ("Prometheus, the exporter's up", lambda: changes(stack, f'up{{job="redis"}}[{LOOKBACK}]')),
        ("Prometheus, the primary's redis_instance_info",
         lambda: changes(stack, f'redis_instance_info{{role="master"}}[{LOOKBACK}]')),
        ("Prometheus, ALERTS",
         lambda: changes(stack, f'ALERTS{{alertname="TallyRedisDown"}}[{LOOKBACK}]')),
        ("Prometheus, the redis scrape",
         lambda: stack.ask("prometheus", 9090, "/api/v1/targets?scrapePool=redis")[-1500:]),
        ("Prometheus, its Alertmanagers",
         lambda: stack.ask("prometheus", 9090, "/api/v1/alertmanagers")[-2000:]),
        ("Alertmanager, its alerts",
         lambda: stack.ask("alertmanager", 9093, "/api/v2/alerts")[-2000:]),
        ("Alertmanager, its log",
         lambda: service_log(stack.service("alertmanager"))),
        ("the double's log", lambda: service_log(receiver)),
    )  # fmt: skip
    for what, ask in hops:
        try:
            parts.append(f"{what}: {ask()}")
        except Exception as exc:  # each hop's own failure is part of the story
            parts.append(f"{what}: could not ask ({exc!r})")
    return "\n".join(parts)


def clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at))


def changes(stack: SwarmStack, selector: str) -> str:
    """Each series of a range selector as the times its value changed: a timeline."""
    lines = []
    for series in stack.prometheus(selector):
        labels = {k: v for k, v in series["metric"].items() if k in SHOWN_LABELS}
        values = [(float(at), value) for at, value in series["values"]]
        points = [f"{clock(at)}={value}" for at, value in transitions(values)]
        ended = clock(float(series["values"][-1][0])) if series["values"] else "-"
        lines.append(f"{labels}: {' '.join(points)} (last sample {ended})")
    return "\n  " + "\n  ".join(lines) if lines else "no samples"


def transitions(samples: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """The samples at which the value changed, the first one included."""
    return [sample for i, sample in enumerate(samples) if i == 0 or sample[1] != samples[i - 1][1]]


def service_log(service: str) -> str:
    return run("docker", "service", "logs", "--raw", "--tail", "40", service).stdout[-2000:]
