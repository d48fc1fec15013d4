"""Shared test helpers: polling with a deadline, free ports, Docker, app processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
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
    """The app image compose builds: the same variables and defaults as compose.yaml."""
    from service import __version__

    name = os.environ.get("TALLY_IMAGE") or "tally-app"
    return f"{name}:{os.environ.get('TALLY_VERSION') or __version__}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
        wait_until(self._healthy, 20, f"the app on port {self.port} to be healthy")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"app exited with {self.process.returncode}: {self.output()}")
        return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def output(self) -> str:
        return self.process.stdout.read() if self.process.stdout else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
