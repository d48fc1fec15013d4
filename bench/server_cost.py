"""The server's price, counted: the instructions a replica's whole process spends on one
GET /count (the HTTP server and its parser, the event loop, the app, redis-py) under
valgrind's cachegrind. tally's own process, `python -m service` as the image runs it,
against the same app served by uvicorn as `make bench`'s tally-on-uvicorn row serves it
(bench/compose.uvicorn.yaml's command), over a socket from keep-alive connections that
send what nginx sends, to a real Redis: one connection, and CONNECTIONS at once.

    docker run -d --rm --name tally-server-cost -p 127.0.0.1:6399:6379 redis:8.0
    REDIS_URL=redis://127.0.0.1:6399/0 uv run --frozen --with uvicorn==0.55.0 \
        --with httptools==0.9.0 python bench/server_cost.py
    docker rm -f tally-server-cost

Like bench/cost.py, each variant serves WARMUP requests in one run and WARMUP + REQUESTS
in another; the difference over REQUESTS is one request, so start-up, the readiness
probe and shutdown cancel out. A busy machine does not move the counts, so this is the
A/B of a setting where wrk's figures drift (the second and third rows are two: the
response's head and body in two writes, `HYPERCORN_ONE_WRITE=false`, and a Redis round
trip per request, `REDIS_COALESCE=false`; the clients here are Python threads, so fewer
calls arrive together than from nginx under wrk and coalescing saves less). It
writes bench/results/server-cost.md; the counts compare variants, they do not predict
req/s (the socket's kernel side, nginx and Redis are in none of them).
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "loadtest")]
from bench.cost import CACHEGRIND, HEADERS, counted, sink, stack_defaults, write_results  # noqa: E402
from stack_client import free_port  # noqa: E402

WARMUP = int(os.environ.get("COST_WARMUP", "200"))
REQUESTS = int(os.environ.get("COST_REQUESTS", "1000"))
# One at a time, and about as many as a replica has in flight when `make bench` saturates
# it (32 connections through nginx over 3 replicas).
CONNECTIONS = (1, 10)
STARTED = 300.0  # seconds for a server under valgrind to answer /healthz
RESULTS = ROOT / "bench" / "results" / "server-cost.md"


def uvicorn_command(port: int) -> list[str]:
    """bench/compose.uvicorn.yaml's command, on `port`."""
    compose = yaml.safe_load((ROOT / "bench" / "compose.uvicorn.yaml").read_text())
    command: list[str] = compose["services"]["app"]["command"]
    at = command.index("--port") + 1
    return [sys.executable, "-m", *command[:at], str(port), *command[at + 1 :]]


# name: (the command on a port, settings over the stack's defaults)
VARIANTS: dict[str, tuple[Callable[[int], list[str]], dict[str, str]]] = {
    "Hypercorn, as shipped (`python -m service`)": (
        lambda port: [sys.executable, "-m", "service"], {}
    ),
    "Hypercorn, head and body in two writes": (
        lambda port: [sys.executable, "-m", "service"], {"HYPERCORN_ONE_WRITE": "false"}
    ),
    "Hypercorn, a Redis round trip per request": (
        lambda port: [sys.executable, "-m", "service"], {"REDIS_COALESCE": "false"}
    ),
    "uvicorn (uvloop, httptools), as `make bench` runs it": (uvicorn_command, {}),
}  # fmt: skip


def served(port: int, requests: int, connections: int) -> None:
    """`requests` GET /count, each with an id of nginx's making, over `connections`
    keep-alive connections at once, each sending its next request when answered."""
    headers = {name.decode(): value.decode() for name, value in HEADERS if name != b"host"}
    failed: list[int] = []

    def client(share: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for _ in range(share):
            connection.request(
                "GET", "/count", headers={**headers, "X-Request-ID": uuid.uuid4().hex}
            )
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                failed.append(response.status)
        connection.close()

    threads = [
        threading.Thread(target=client, args=(requests // connections,)) for _ in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        sys.exit(f"server_cost: {len(failed)} GET /count failed: {sorted(set(failed))}")


def ready(port: int, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + STARTED
    while server.poll() is None and time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                connection.close()
                return
        except OSError:
            time.sleep(0.5)
    server.kill()
    sys.exit(f"server_cost: the server did not answer /healthz:\n{server.communicate()[1][-2000:]}")


def instructions(variant: str, connections: int, requests: int, endpoint: str) -> int:
    command, settings = VARIANTS[variant]
    port = free_port()
    env = {
        **stack_defaults(), **os.environ, **settings, "PYTHONHASHSEED": "0",
        "PORT": str(port), "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
    }  # fmt: skip
    server = subprocess.Popen(
        [*CACHEGRIND, *command(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ready(port, server)
    served(port, requests, connections)
    server.send_signal(signal.SIGTERM)
    _, stderr = server.communicate(timeout=STARTED)
    return counted(stderr, f"server_cost: {variant}")


def main() -> None:
    if "REDIS_URL" not in os.environ:
        sys.exit("server_cost: set REDIS_URL to a Redis that may be written to")
    rows = []
    with sink() as endpoint:
        for connections in CONNECTIONS:
            first = 0.0
            for variant in VARIANTS:
                base = instructions(variant, connections, WARMUP, endpoint)
                total = instructions(variant, connections, WARMUP + REQUESTS, endpoint)
                cost = (total - base) / REQUESTS
                first = first or cost
                rows.append(f"| {variant} | {connections} | {cost:,.0f} | {cost / first:.2f} |")
                print(rows[-1], flush=True)
    write_results(
        RESULTS,
        "Written by bench/server_cost.py: instructions in a replica's whole process per"
        f" GET /count (server, event loop, app, redis-py; a real Redis), {REQUESTS} requests"
        f" after {WARMUP}, on keep-alive connections each sending its next request when"
        " answered, under cachegrind.",
        ["server", "connections", "instructions per request", "against the first"],
        rows,
    )


if __name__ == "__main__":
    main()
