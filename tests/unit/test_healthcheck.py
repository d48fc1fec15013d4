"""The container's health probe against a one-shot local server: healthy only on a 200."""

import socket
import threading
from collections.abc import Iterator

import pytest

from service.healthcheck import main, probe

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
            requests.append(conn.recv(1024))
            conn.sendall(reply[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    yield port, reply, requests
    listener.close()
    thread.join(timeout=2)


def test_healthy_when_healthz_answers_200(answer: Server) -> None:
    port, reply, requests = answer
    reply[0] = b"HTTP/1.1 200 \r\ncontent-length: 3\r\n\r\nok\n"
    assert probe(port)
    assert requests[0].startswith(b"GET /healthz HTTP/1.0\r\n")


@pytest.mark.parametrize(
    "response",
    [b"HTTP/1.1 503 \r\n\r\n", b"HTTP/1.1 2000 \r\n\r\n", b"garbage", b""],
)
def test_unhealthy_on_anything_but_200(answer: Server, response: bytes) -> None:
    port, reply, _ = answer
    reply[0] = response
    assert not probe(port)


def test_unhealthy_when_nothing_listens() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    assert not probe(port)


def test_the_probe_asks_the_port_the_settings_name(
    answer: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, reply, requests = answer
    reply[0] = b"HTTP/1.1 200 \r\n\r\n"
    monkeypatch.setenv("PORT", str(port))
    assert main() == 0
    assert requests


def test_a_bad_port_setting_is_unhealthy_and_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORT", "http")
    assert main() == 1
    assert "PORT must be a port number" in capsys.readouterr().err
