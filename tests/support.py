"""Shared test helpers: polling with a deadline, commands, Docker, app processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from ops import configuration
from stack_client import free_port

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll `condition` until it returns a truthy value; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except Exception as exc:
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})"
    )


def app_image() -> str:
    """The app image compose builds (ops/configuration.py declares its variables)."""
    return configuration.app_image(os.environ)


def run(
    *args: str,
    check: bool = True,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
        input=input,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


class RedisContainer:
    """A real redis:8.0 server in Docker on a fixed loopback port (so it survives stop/start)."""

    def __init__(self) -> None:
        self.name = f"tally-test-redis-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        run(
            "docker",
            "run",
            "-d",
            "--name",
            self.name,
            "-p",
            f"127.0.0.1:{self.port}:6379",
            "redis:8.0",
            "redis-server",
            "--save",
            "",
        )
        self.wait_ready()

    def wait_ready(self) -> None:
        wait_until(lambda: self.cli("PING") == "PONG", 30, f"{self.name} to answer PING")

    def cli(self, *args: str) -> str:
        return run("docker", "exec", self.name, "redis-cli", *args).stdout.strip()

    def remove(self) -> None:
        run("docker", "rm", "-f", self.name, check=False)


@contextmanager
def redis_container() -> Iterator[RedisContainer]:
    redis = RedisContainer()
    try:
        redis.start()
        yield redis
    finally:
        redis.remove()


class AppProcess:
    """`python -m service` as a real process on its own port."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {"PATH": os.environ["PATH"], "PORT": str(self.port), "LOG_LEVEL": "WARNING"}
        full_env.update(env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # Drained as it comes: a full pipe would stall the app, and tests read its lines.
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        wait_until(self._healthy, 20, f"the app on port {self.port} to be healthy")

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"app exited with {self.process.returncode}: {self.output()}")
        return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def output(self) -> str:
        """What the process wrote so far; all of it once it has exited."""
        if self.process.poll() is not None:
            self._reader.join(timeout=10)
        return "\n".join(self.lines)

    def access_line(self, request_id: str) -> dict[str, Any]:
        """The app's own access line for the request `request_id` (LOG_LEVEL=INFO, JSON)."""

        def find() -> dict[str, Any] | None:
            for line in list(self.lines):
                if line.startswith("{"):
                    record: dict[str, Any] = json.loads(line)
                    if record.get("event") == "request" and record["request_id"] == request_id:
                        return record
            return None

        return wait_until(find, 10, f"the access line of request {request_id}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


# Services whose process starts as root, each for a reason, with every other capability dropped.
STARTS_AS_ROOT = {
    "redis": "the image's entrypoint chowns /data, then drops to user redis",
    "nginx": "the master binds :80 and starts its workers as user nginx",
    "secrets": "one-shot with no network: writes each secret owned by its one reader",
    "redis-2": "as redis: ops/redis/ha.sh finds the primary, then the entrypoint drops to redis",
    "redis-3": "as redis: ops/redis/ha.sh finds the primary, then the entrypoint drops to redis",
    "backup": "reads its Redis password (root's alone), then runs as its folder's owner",
}


def assert_locked_down(name: str, service: dict[str, Any]) -> None:
    """What every service of ours gets, in compose and on Swarm: all capabilities dropped, a
    read-only root, no Docker socket, and non-root unless it starts as root for its reason."""
    assert service.get("cap_drop") == ["ALL"]
    assert service.get("read_only") is True
    for volume in service.get("volumes", []):
        assert "docker.sock" not in str(volume.get("source", ""))
    if name not in STARTS_AS_ROOT:
        assert str(service.get("user", "")).split(":")[0] not in ("root", "0")
    else:
        assert set(service.get("cap_add", [])) <= {
            "CHOWN", "SETUID", "SETGID", "NET_BIND_SERVICE", "DAC_OVERRIDE", "FOWNER",
        }  # fmt: skip
