"""service.one_write: a real Hypercorn on a loopback socket writes each response once."""

from __future__ import annotations

import asyncio
import socket
import tomllib
from collections.abc import AsyncIterator, Callable
from importlib.metadata import version
from typing import Any

import h11
import pytest
import structlog
from hypercorn.asyncio import serve
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.config import Config
from hypercorn.events import RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from service import one_write
from service.settings import Settings
from tests.support import ROOT


async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """/body: a body of 5 bytes; /empty: 204; /fail: an error before any answer;
    /echo: the request body back (read after Hypercorn's 100 Continue)."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/fail":
        raise RuntimeError("boom")
    body = b""
    if path == "/echo":
        while True:
            message = await receive()
            body += message.get("body", b"")  # type: ignore[operator]
            if not message.get("more_body"):
                break
    if path == "/body":
        body = b"hello"
    status = 204 if path == "/empty" else 200
    headers = [(b"content-length", str(len(body)).encode())] if status == 200 else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class Server:
    def __init__(self, port: int, writes: list[bytes]) -> None:
        self.port = port
        self.writes = writes  # every RawData Hypercorn hands to the socket, in order


RELEASED = H11Protocol._send_h11_event


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypercorn's class as released after the test: install() changes it process-wide."""
    monkeypatch.setattr(H11Protocol, "_send_h11_event", RELEASED)
    monkeypatch.setattr(H11Protocol, "_held_head", None, raising=False)


@pytest.fixture
async def server(restored: None, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Server]:
    """A real Hypercorn with one_write installed (or not, by what the test did first)."""
    writes: list[bytes] = []  # what each write to a socket carried
    original: Callable[..., Any] = TCPServer.protocol_send

    async def recording_send(self: TCPServer, event: Any) -> None:
        if isinstance(event, RawData) and event.data:  # b"" reaches no socket
            writes.append(event.data)
        await original(self, event)

    monkeypatch.setattr(TCPServer, "protocol_send", recording_send)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    try:
        yield Server(sock.getsockname()[1], writes)
    finally:
        stop.set()
        await task
        sock.detach()  # Hypercorn closed the descriptor


async def exchange(
    port: int, requests: list[tuple[str, str, bytes]], expect_continue: bool = False
) -> list[tuple[int, bytes]]:
    """Send each (method, path, body) on one keep-alive connection; (status, body) for each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = h11.Connection(h11.CLIENT)
    answers = []
    try:
        for method, path, body in requests:
            headers = [("host", "test"), ("content-length", str(len(body)))]
            if expect_continue:
                headers.append(("expect", "100-continue"))
            writer.write(client.send(h11.Request(method=method, target=path, headers=headers)))
            if expect_continue:
                # The interim answer must arrive while the body is still held back.
                interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert interim.startswith(b"HTTP/1.1 100 ")
            writer.write(client.send(h11.Data(data=body)) + client.send(h11.EndOfMessage()))
            status, received = 0, b""
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await asyncio.wait_for(reader.read(65536), 5))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    received += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            answers.append((status, received))
            if client.our_state is h11.DONE and client.their_state is h11.DONE:
                client.start_next_cycle()
            else:
                break
    finally:
        writer.close()
    return answers


@pytest.fixture
def installed(restored: None) -> None:
    assert one_write.install()


@pytest.mark.usefixtures("installed")
async def test_head_and_body_go_in_one_write(server: Server) -> None:
    assert await exchange(server.port, [("GET", "/body", b"")]) == [(200, b"hello")]
    [write] = server.writes
    assert write.startswith(b"HTTP/1.1 200 ")
    assert write.endswith(b"\r\n\r\nhello")


@pytest.mark.usefixtures("installed")
async def test_a_keep_alive_connection_writes_each_answer_once(server: Server) -> None:
    answers = await exchange(server.port, [("GET", "/body", b""), ("GET", "/empty", b"")] * 2)
    assert answers == [(200, b"hello"), (204, b"")] * 2
    assert len(server.writes) == 4
    assert [w[:12] for w in server.writes] == [b"HTTP/1.1 200", b"HTTP/1.1 204"] * 2


@pytest.mark.usefixtures("installed")
async def test_a_head_request_gets_its_head(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"HEAD /body HTTP/1.1\r\nhost: test\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"content-length: 5" in head
    assert server.writes == [head]


@pytest.mark.usefixtures("installed")
async def test_an_app_error_still_answers_500_in_one_write(server: Server) -> None:
    assert await exchange(server.port, [("GET", "/fail", b"")]) == [(500, b"")]
    assert len(server.writes) == 1


@pytest.mark.usefixtures("installed")
async def test_an_interim_100_continue_is_not_held(server: Server) -> None:
    answers = await exchange(server.port, [("POST", "/echo", b"abc")], expect_continue=True)
    assert answers == [(200, b"abc")]
    assert server.writes[0].startswith(b"HTTP/1.1 100 ")
    assert len(server.writes) == 2


def test_the_locked_hypercorn_is_the_series_it_was_written_against() -> None:
    # one_write replaces a private Hypercorn method. After an upgrade, compare it with
    # the new H11Protocol._send_h11_event, then move SERIES and pyproject.toml's pin.
    assert version("hypercorn").startswith(one_write.SERIES + ".")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for d in pyproject["project"]["dependencies"] if d.startswith("hypercorn")]
    major, minor = one_write.SERIES.split(".")
    assert pins == [f"hypercorn>={major}.{minor},<{major}.{int(minor) + 1}"]


async def test_another_hypercorn_is_left_alone_with_one_warning_and_still_serves(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(one_write, "version", lambda _: "0.19.0")
    with structlog.testing.capture_logs() as logs:
        assert not one_write.install()
    assert H11Protocol._send_h11_event is RELEASED
    assert logs == [
        {"event": "one_write_skipped", "hypercorn": "0.19.0", "written_for": one_write.SERIES,
         "log_level": "warning"}
    ]  # fmt: skip
    assert await exchange(server.port, [("GET", "/body", b"")]) == [(200, b"hello")]
    assert len(server.writes) == 2  # head and body apart, as Hypercorn writes them


def test_switched_off_it_leaves_hypercorn_alone(restored: None) -> None:
    with structlog.testing.capture_logs() as logs:
        assert not one_write.install(enabled=False)
    assert H11Protocol._send_h11_event is RELEASED
    assert logs == []


def test_python_m_service_installs_it_from_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from service import __main__ as entry

    calls: list[bool] = []

    def install(enabled: bool) -> bool:
        calls.append(enabled)
        return enabled

    monkeypatch.setattr(one_write, "install", install)

    async def serve(*_: Any, **__: Any) -> None:
        pass

    monkeypatch.setattr(entry, "serve", serve)
    for value, expected in (("false", False), ("", True)):
        settings = Settings.from_env({"HYPERCORN_ONE_WRITE": value, "REPLICA_ID": "r"})
        asyncio.run(entry.run(settings))
        assert calls.pop() is expected
