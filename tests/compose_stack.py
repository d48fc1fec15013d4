"""The compose stack built from this repo, under a project name and host ports of its own."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from subprocess import CompletedProcess
from types import MappingProxyType
from typing import Any

import httpx

from stack_client import free_port, read_count
from tests.stack.alert_receiver import PORT as ALERT_RECEIVER_PORT
from tests.support import app_image, run

# Grafana and Tempo do not run on the CI machines (no image for them there);
# everything else starts by name (naming a service enables its profile for it alone).
SERVICES = (
    "redis", "app", "nginx", "prometheus", "redis-exporter", "nginx-exporter", "alertmanager",
)  # fmt: skip
RECEIVER = Path(__file__).parent / "stack" / "otlp_receiver.py"
ALERT_RECEIVER = Path(__file__).parent / "stack" / "alert_receiver.py"


class Stack:
    # The compose files, in order (later ones override), and the services `up` starts.
    # Alertmanager's waits in seconds for the tests; everything else as shipped.
    files: tuple[str, ...] = ("compose.yaml", "tests/stack/compose.alerts.yaml")
    services: tuple[str, ...] = SERVICES
    receivers = True

    def __init__(self) -> None:
        self.project = f"tally-test-{uuid.uuid4().hex[:8]}"
        self.receiver = f"{self.project}-otlp-receiver"
        self.alert_receiver = f"{self.project}-alert-receiver"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prometheus = f"http://127.0.0.1:{free_port()}"
        self.alertmanager = f"http://127.0.0.1:{free_port()}"
        # Never changed after this: a test that needs other settings passes them to
        # compose() or up() for that call, so no test sees another's.
        self.env: Mapping[str, str] = MappingProxyType({
            **os.environ,
            "COMPOSE_FILE": ":".join(self.files),
            "ALERTMANAGER_PORT": self.alertmanager.rsplit(":", 1)[1],
            "HTTP_PORT": str(self.port),
            "PROMETHEUS_PORT": self.prometheus.rsplit(":", 1)[1],
            "GRAFANA_PORT": str(free_port()),
            # All test traffic comes from one address; the limit itself has its own test.
            "NGINX_RATE_LIMIT": "100000r/s",
            "NGINX_RATE_BURST": "100000",
            # Every request traced, so the trace tests can count spans.
            "OTEL_TRACES_SAMPLER_ARG": "1.0",
        })  # fmt: skip

    def compose(
        self,
        *args: str,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
    ) -> CompletedProcess[str]:
        """`docker compose` on this project, with `env` on top of the stack's own settings."""
        full_env = {**self.env, **(env or {})}
        return run(
            "docker", "compose", "-p", self.project, *args, check=check, env=full_env, input=input
        )  # fmt: skip

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop("-v")  # a half-started stack is torn down too
            raise
        return self

    def __exit__(self, *_: object) -> None:
        """Down with the volumes: nothing of the stack outlives it."""
        self.stop("-v")

    def start(self) -> None:
        """Bring the stack up; with `receivers`, the OTLP receiver in Tempo's place before
        any replica starts, and a webhook receiver switched on in Alertmanager the way a
        user does it."""
        self.compose("build", "app")
        self.compose("up", "-d", "--wait", "redis")  # the secrets first, and the networks
        if self.receivers:
            for name, alias, script in (
                (self.receiver, "tempo", RECEIVER),
                (self.alert_receiver, "alert-receiver", ALERT_RECEIVER),
            ):
                run(
                    "docker", "run", "-d", "--no-healthcheck", "--name", name,
                    "--network", f"{self.project}_backend", "--network-alias", alias,
                    "--read-only", "--user", "10001", "--cap-drop", "ALL",
                    "-v", f"{script}:/receiver.py:ro",
                    app_image(), "python", "/receiver.py",
                )  # fmt: skip
            self.compose(
                "run", "--rm", "--no-deps", "-T", "secrets", "alertmanager_webhook_url",
                input=f"http://alert-receiver:{ALERT_RECEIVER_PORT}/\n",
            )  # fmt: skip
        self.up()

    def stop(self, *args: str) -> None:
        run("docker", "rm", "-f", self.receiver, self.alert_receiver, check=False)
        self.compose("--profile", "observability", "down", "--remove-orphans", *args, check=False)

    def up(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        """Converge on the stack's settings (plus `env`): only what differs is recreated."""
        # --no-deps: naming a profiled service enables its whole profile, and the app's
        # optional dependency on Tempo would then be pulled. start() ran redis first.
        self.compose("up", "-d", "--wait", "--no-deps", *args, *self.services, env=env)

    @contextmanager
    def changed(self, **env: str) -> Iterator[None]:
        """The stack recreated with `env`, and as `up` makes it again afterwards, whatever
        happens inside."""
        try:
            self.up(env=env)
            yield
        finally:
            self.up()

    def notifications(self) -> list[dict[str, Any]]:
        """Every webhook notification Alertmanager sent, oldest first."""
        out = run("docker", "logs", self.alert_receiver).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def received_spans(self) -> list[dict[str, Any]]:
        out = run("docker", "logs", self.receiver).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def app_log_lines(self) -> list[str]:
        return self.compose("logs", "--no-log-prefix", "--no-color", "app").stdout.splitlines()

    def access_lines(self) -> list[dict[str, Any]]:
        """The replicas' access lines so far (one per request answered), parsed."""
        records = (json.loads(line) for line in self.app_log_lines() if line.startswith("{"))
        return [record for record in records if record.get("event") == "request"]

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
        return read_count(self.url)


class CoreStack(Stack):
    """The core stack alone, as `make up` starts it: Redis, the replicas, nginx."""

    files = ("compose.yaml",)
    services = ("redis", "app", "nginx")
    receivers = False
