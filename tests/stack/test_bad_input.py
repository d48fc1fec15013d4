"""Bad input through nginx: fuzzed raw requests, and each of nginx's limits."""

from __future__ import annotations

import json
import re
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ops.configuration import NGINX_TEMPLATE
from tests.compose_stack import Stack
from tests.support import wait_until

HEADER_TIMEOUT = re.compile(r"^client_header_timeout (\d+)s;", re.MULTILINE)

METHODS = st.sampled_from(
    ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "FOO"]
)
PATHS = st.one_of(
    st.sampled_from(["/", "/count", "/healthz", "/readyz", "/metrics", "/static/style.css"]),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60).map(
        lambda p: "/" + p.replace(" ", "")
    ),
)
QUERIES = st.one_of(st.just(""), st.text(max_size=40).map(lambda q: "?" + q.encode().hex()))
ACCEPTS = st.one_of(
    st.sampled_from(
        ["*/*", "application/json", "text/html", "text/plain;q=0", "", "a/b;q=x", ",,,"]
    ),
    st.binary(max_size=40),
)
KEYS = st.one_of(
    st.none(),
    st.just(b""),
    st.binary(min_size=1, max_size=300),
    st.text(max_size=300).map(str.encode),
)
JUNK_HEADERS = st.lists(
    st.tuples(st.binary(min_size=1, max_size=30), st.binary(max_size=200)), max_size=3
)


@dataclass
class KeyLedger:
    """The Idempotency-Keys one run of the fuzz test has sent. Hypothesis calls the test
    once per example with the same fixture value, so the ledger spans that run's examples
    and nothing else; the salt keeps its keys apart from those of any other run that
    Redis still remembers (IDEMPOTENCY_TTL)."""

    salt: bytes = field(default_factory=lambda: uuid.uuid4().hex[:8].encode())
    seen: set[bytes] = field(default_factory=set)

    def salted(self, key: bytes | None) -> bytes | None:
        return self.salt + key if key else key

    def is_replay(self, key: bytes | None) -> bool:
        """Whether `key` was sent before in this run; from now on it has been."""
        replay = bool(key) and key in self.seen
        self.seen.add(key or b"")
        return replay


@pytest.fixture
def keys() -> KeyLedger:
    return KeyLedger()


def raw_request(stack: Stack, data: bytes) -> bytes:
    port = urlsplit(stack.url).port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.") else 0


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=METHODS, path=PATHS, query=QUERIES, accept=ACCEPTS, key=KEYS, junk=JUNK_HEADERS,
    huge=st.sampled_from([0, 0, 0, 9000, 20000]),
)  # fmt: skip
def test_fuzzed_requests_never_5xx_never_leak_never_count_when_refused(
    stack: Stack,
    keys: KeyLedger,
    method: str,
    path: str,
    query: str,
    accept: bytes | str,
    key: bytes | None,
    junk: list[tuple[bytes, bytes]],
    huge: int,
) -> None:
    key = keys.salted(key)
    accept_bytes = accept if isinstance(accept, bytes) else accept.encode()
    lines = [f"{method} {path}{query} HTTP/1.1".encode(), b"Host: localhost", b"Connection: close"]
    lines.append(b"Accept: " + accept_bytes.replace(b"\r", b"").replace(b"\n", b""))
    if key is not None:
        lines.append(b"Idempotency-Key: " + key.replace(b"\r", b"").replace(b"\n", b""))
    for name, value in junk:
        lines.append(name.replace(b"\r\n", b"") + b": " + value.replace(b"\r\n", b""))
    if huge:
        lines.append(b"X-Huge: " + b"a" * huge)
    before = stack.count()
    response = raw_request(stack, b"\r\n".join(lines) + b"\r\n\r\n")
    after = stack.count()
    status = status_of(response)
    assert status != 0, response[:200]
    assert status < 500, response[:500]
    assert b"Traceback" not in response
    assert b'File "/' not in response
    counted = after - before - 1
    if status == 200 and method == "GET" and urlsplit(path).path == "/count":
        # A key sent before is a replay: the first answer again, nothing counted.
        assert counted == (0 if keys.is_replay(key) else 1)
    else:
        assert counted == 0, f"{status} for {method} {path} changed the counter"


def test_a_request_body_is_refused_with_413(stack: Stack) -> None:
    before = stack.count()
    response = httpx.request("GET", f"{stack.url}/count", content=b"x" * 10)
    assert response.status_code == 413
    chunked = httpx.post(f"{stack.url}/count", content=iter([b"a", b"b"]))
    assert chunked.status_code == 413
    assert stack.count() == before + 1


@pytest.mark.parametrize("coding", [b"", b"gzip", b"identity", b"gzip, chunked"])
def test_a_transfer_encoding_nginx_cannot_read_is_a_400(stack: Stack, coding: bytes) -> None:
    """nginx's own answer would be 501 (found by the fuzzer above, with an empty value)."""
    before = stack.count()
    response = raw_request(
        stack,
        b"GET /count HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"Transfer-Encoding: " + coding + b"\r\n\r\n",
    )
    assert status_of(response) == 400, response[:300]
    assert b"takes no request body" in response
    assert stack.count() == before + 1


def test_oversized_request_line_and_headers_are_refused(stack: Stack) -> None:
    long_path = httpx.get(f"{stack.url}/count?" + "a" * 9000)
    assert long_path.status_code == 414
    big_header = httpx.get(f"{stack.url}/count", headers={"X-Big": "b" * 9000})
    assert big_header.status_code == 400


def test_a_slowloris_client_is_cut_off_by_the_header_timeout(stack: Stack) -> None:
    timeout = float(HEADER_TIMEOUT.findall(NGINX_TEMPLATE.read_text())[0])
    port = urlsplit(stack.url).port
    marker = uuid.uuid4().hex
    with socket.create_connection(("127.0.0.1", port), timeout=3 * timeout) as conn:
        conn.sendall(f"GET /count?slowloris={marker} HTTP/1.1\r\nHost: localhost\r\n".encode())
        data = conn.recv(4096)  # nginx answers 408 or closes; we never finish the headers
    assert data == b"" or status_of(data) == 408

    # How long nginx held the connection, as nginx measured it (its access line's
    # request_time): the header timeout cut it, not a later one, whatever this machine's load.
    def logged() -> dict[str, Any] | None:
        lines = stack.compose("logs", "--no-log-prefix", "--no-color", "nginx").stdout
        records = [json.loads(line) for line in lines.splitlines() if marker in line]
        return records[0] if records else None

    line = wait_until(logged, 15, "nginx's access line for the slowloris request")
    assert line["status"] == 408
    # nginx starts the timer at accept, before the request's own clock, and lets a timer
    # fire up to 300 ms early (NGX_TIMER_LAZY_DELAY): 9.995 s was seen for 10 s.
    assert 0.9 * timeout <= line["request_time"] < 1.5 * timeout


def test_security_headers_and_no_version_disclosed(stack: Stack) -> None:
    for path in ("/", "/count", "/metrics", "/nope"):
        response = httpx.get(f"{stack.url}{path}")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Server"] == "nginx"
        assert "Traceback" not in response.text


def test_per_client_rate_limit_answers_429_past_the_burst(stack: Stack) -> None:
    with stack.changed(NGINX_RATE_LIMIT="2r/s", NGINX_RATE_BURST="5"):  # nginx recreated
        wait_until(lambda: httpx.get(f"{stack.url}/healthz").status_code == 200, 15, "nginx up")
        statuses = [httpx.get(f"{stack.url}/").status_code for _ in range(30)]
    assert 429 in statuses
    assert statuses.count(200) >= 5
