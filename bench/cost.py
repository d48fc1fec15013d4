"""CPU cost per request, counted rather than timed: the instructions one GET /count takes
in the app, in-process, under valgrind's cachegrind.

The machine's speed and its neighbours do not move an instruction count, so two builds
or two settings compare on a busy 2-core machine where wrk cannot. Each variant runs
twice, with WARMUP and WARMUP + REQUESTS requests, and the difference over REQUESTS is
the cost of one: start-up, imports and first-request caches cancel out. The ASGI app is
called directly (no Hypercorn, no socket) with the headers nginx sends; the real Counter
runs on a fake Redis that answers at once; the JSON access line goes through the real
batched writer to /dev/null; spans leave over OTLP/HTTP to a sink in this process.

    uv run --frozen python bench/cost.py [tally|lean|bare|bare-incr ...]

Settings come from the environment as in the stack (OTEL_TRACES_SAMPLER_ARG, LOG_LEVEL,
OTEL_BSP_*), so `OTEL_TRACES_SAMPLER_ARG=0.01 ... bench/cost.py tally` is an A/B of the
sampling ratio. Needs valgrind (Debian's `valgrind`).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WARMUP = int(os.environ.get("COST_WARMUP", "500"))
REQUESTS = int(os.environ.get("COST_REQUESTS", "2000"))
VARIANTS = ("tally", "lean", "bare", "bare-incr")
# What nginx sends upstream for wrk's GET /count (ops/nginx/templates/tally.conf.template).
HEADERS = [
    (b"host", b"localhost"),
    (b"x-request-id", b"0123456789abcdef0123456789abcdef"),
    (b"x-forwarded-for", b"172.18.0.1"),
    (b"x-forwarded-proto", b"http"),
]


class FakeRedis:
    """Just enough of redis.asyncio.Redis for service.counter.Counter; answers at once."""

    def __init__(self) -> None:
        self.value = 0
        self.connection_pool = type("Pool", (), {"connection_kwargs": {"host": "redis"}})()

    def register_script(self, _: str) -> Any:
        async def script(keys: list[str], args: list[int]) -> list[int]:
            self.value += 1
            return [self.value, 0]

        return script

    async def execute_command(self, *_: Any) -> int:
        self.value += 1
        return self.value

    async def aclose(self) -> None:
        pass


def child(variant: str, requests: int) -> None:
    """Serve `requests` GET /count to the variant's ASGI app (run under cachegrind)."""
    from service import logs, tracing
    from service.counter import Counter
    from service.settings import Settings

    env = dict(os.environ)
    if variant == "lean":
        env |= {"OTEL_SDK_DISABLED": "true", "LOG_LEVEL": "WARNING"}
    settings = Settings.from_env(env)
    devnull = open(os.devnull, "w")  # noqa: SIM115  (the process's whole life)
    logs.configure(settings, devnull)

    def counter(settings: Settings, observe: Any = None, tracer: Any = None) -> Counter:
        kwargs = {"observe": observe} if observe else {}
        return Counter(cast(Any, FakeRedis()), "visitor_count", 300, 1.0, tracer=tracer, **kwargs)

    if variant.startswith("bare"):
        os.environ["BARE_INCREMENT"] = "incr" if variant == "bare-incr" else "once"
        from bench import bare

        Counter.from_settings = counter  # type: ignore[method-assign]
        app: Any = bare.app
        provider = None
    else:
        from service import middleware
        from service.app import create_app

        # Under valgrind a request takes tens of times its real time, so by the wall
        # clock some would pass the latency SLO's threshold and have their traces
        # rebuilt: this counts what a fast success costs.
        middleware.LATENCY_SLO_SECONDS = float("inf")  # type: ignore[attr-defined]
        provider = tracing.tracer_provider(settings)
        app = create_app(settings, counter, tracer_provider=provider)
    asyncio.run(serve(app, requests))


async def serve(app: Any, requests: int) -> None:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/count", "raw_path": b"/count", "query_string": b"",
        "root_path": "", "headers": HEADERS, "client": ("172.18.0.5", 40000),
        "server": ("172.18.0.3", 8000), "extensions": {},
    }  # fmt: skip

    statuses: list[int] = []
    loop = asyncio.get_running_loop()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async with app.test_app():  # before_serving / after_serving, as Hypercorn runs them
        for _ in range(requests):
            await app(dict(scope), receiver(loop), send)
    if statuses.count(200) != requests:
        sys.exit(f"cost: {requests - statuses.count(200)} of {requests} requests failed")


def receiver(loop: asyncio.AbstractEventLoop) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A server's `receive` for one bodiless request: the request, then nothing until the
    client goes away (Quart waits on it beside the handler)."""
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        return await loop.create_future()  # type: ignore[no-any-return]

    return receive


class Sink(BaseHTTPRequestHandler):
    """Tempo's place: accepts OTLP/HTTP and forgets it."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def stack_defaults() -> dict[str, str]:
    """The defaults compose.yaml gives the replicas for what this measures."""
    compose = (ROOT / "compose.yaml").read_text()
    names = ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "LOG_LEVEL")
    return {
        name: re.search(rf"{name}: \$\{{{name}:-([^}}]*)\}}", compose).group(1)  # type: ignore[union-attr]
        for name in names
    }


def instructions(variant: str, requests: int, endpoint: str) -> int:
    env = {**stack_defaults(), **os.environ, "PYTHONHASHSEED": "0"}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    return cachegrind([__file__, "--child", variant, str(requests)], env, f"cost: {variant}")


def write_results(path: Path, intro: str, columns: list[str], rows: list[str]) -> None:
    """A counted results file: who wrote it and how, then the table; named on stdout."""
    head = f"| {' | '.join(columns)} |\n|{' --- |' * len(columns)}\n"
    path.write_text(f"{intro}\n\n{head}" + "\n".join(rows) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


# The prefix that has valgrind's cachegrind count a command's instructions, and only that.
CACHEGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]


def counted(stderr: str, what: str, ok: bool = True) -> int:
    """The instructions cachegrind reported on `stderr`; exits naming `what` when the run
    was not `ok` or reported none."""
    found = re.search(r"I\s+refs:\s+([\d,]+)", stderr)
    if not ok or found is None:
        sys.exit(f"{what} failed:\n{stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def cachegrind(script: list[str], env: dict[str, str], what: str) -> int:
    """The instructions `python script...` runs, counted by cachegrind; exits naming `what`
    when the run fails."""
    result = subprocess.run(
        [*CACHEGRIND, sys.executable, *script], capture_output=True, text=True, env=env, check=False
    )
    return counted(result.stderr, what, ok=result.returncode == 0)


@contextmanager
def sink() -> Iterator[str]:
    """A Sink on a loopback port for as long as the block runs: its OTLP endpoint."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
        return
    variants = sys.argv[1:] or list(VARIANTS)
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        sys.exit(f"cost: unknown variant(s) {', '.join(sorted(unknown))}; one of {VARIANTS}")
    print(f"instructions per GET /count ({REQUESTS} requests after {WARMUP}, in-process)")
    with sink() as endpoint:
        for variant in variants:
            base = instructions(variant, WARMUP, endpoint)
            total = instructions(variant, WARMUP + REQUESTS, endpoint)
            print(f"{variant:10} {(total - base) / REQUESTS:12,.0f}", flush=True)


if __name__ == "__main__":
    main()
