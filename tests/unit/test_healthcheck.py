"""The container's health probe (service/healthcheck.sh, run by bash as the Dockerfile's
HEALTHCHECK does) against a one-shot local server: healthy only on a 200."""

import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.settings import Settings

PROBE = Path(__file__).resolve().parents[2] / "service" / "healthcheck.sh"

Server = tuple[int, list[bytes], list[bytes]]


@pytest.fixture
def answer() -> Iterator[Server]:
    """A server on a free port that reads one request and answers `reply[0]`:
    (port, reply, requests received)."""
    listener = socket.create_server(("127.0.0.1", 0))
    reply = [b""]
    requests: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            # The whole head, as an HTTP server reads it: bash may write the request in
            # more than one piece.
            received = b""
            while b"\r\n\r\n" not in received and (chunk := conn.recv(1024)):
                received += chunk
            requests.append(received)
            conn.sendall(reply[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    yield port, reply, requests
    listener.close()
    thread.join(timeout=2)


def probe(port: str) -> int:
    env = {**os.environ, "PORT": port}
    return subprocess.run(["bash", str(PROBE)], env=env, capture_output=True, timeout=20).returncode


def test_healthy_when_healthz_answers_200(answer: Server) -> None:
    port, reply, requests = answer
    reply[0] = b"HTTP/1.1 200 \r\ncontent-length: 3\r\n\r\nok\n"
    assert probe(str(port)) == 0
    assert requests[0].startswith(b"GET /healthz HTTP/1.0\r\n")


@pytest.mark.parametrize(
    "response",
    [b"HTTP/1.1 503 \r\n\r\n", b"HTTP/1.1 2000 \r\n\r\n", b"HTTP/1.1 200", b"garbage", b""],
)
def test_unhealthy_on_anything_but_200(answer: Server, response: bytes) -> None:
    port, reply, _ = answer
    reply[0] = response
    assert probe(str(port)) != 0


def test_unhealthy_when_nothing_listens() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    assert probe(str(port)) != 0


def test_a_bad_port_setting_is_unhealthy() -> None:
    assert probe("http") != 0


def test_the_probes_default_port_is_the_settings_default() -> None:
    """PORT is declared once, in service/settings.py; the probe's fallback must agree."""
    defaults = re.findall(r"\$\{PORT:-(\d+)\}", PROBE.read_text())
    assert defaults == [str(Settings.port)]
