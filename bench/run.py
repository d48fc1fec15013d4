"""make bench: tally with everything on against bare Quart and Flask baselines.

Six variants, each 3 replicas behind nginx: tally; tally-lean (tracing off, no access
line: what those two cost); tally-ha (compose.ha.yaml: Sentinel and a WAIT for one
replica after each increment, what high availability costs); bare Quart + Hypercorn
with the exactly-once script and with a plain INCR (bench/bare.py: the framework's own
baseline, and the script's cost); Flask on gunicorn with a plain INCR. Peak throughput
from wrk (a closed loop) at 32 and 128 connections; then latency at a fixed offered
load, half of Flask's peak in this run, from an open loop (bench/openloop.py: latency
from each request's scheduled send time). Every variant is built and measured in this
one run (the machine is noisy and drifts, so only ratios within a run mean anything):
all are up side by side and their runs take turns, the others paused while one is
loaded. Two controls join the open loop only: tally and Flask without Docker's health
probes (bench/compose.noprobes.yaml), which set every variant's p99 on this machine
(docs/PERFORMANCE.md). Medians of BENCH_RUNS (3) runs of BENCH_SECONDS (10). Prints one
table and the ratios, and writes them to bench/results/latest.md. `--soak` (make soak)
instead loads tally for SOAK_SECONDS (300), reads each replica's RSS every 30 s, and
writes the series and the growth to bench/results/soak.md.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.md"
SOAK_RESULTS = ROOT / "bench" / "results" / "soak.md"
CONNECTIONS = (32, 128)
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
SERVICES = ("redis", "app", "nginx")
# The open loop's controls add this override last: every health probe off.
NO_PROBES = "bench/compose.noprobes.yaml"
# compose.ha.yaml: a primary, two replicas, three Sentinels; WAIT 1 after each increment.
HA_SERVICES = ("redis", "redis-2", "redis-3", "sentinel-1", "sentinel-2", "sentinel-3",
               "app", "nginx")  # fmt: skip
# Seconds a read of the counter is retried with its one Idempotency-Key.
READ_RETRY = 15.0
sys.path[:0] = [str(ROOT), str(ROOT / "loadtest")]
from bench import openloop  # noqa: E402
from ops.configuration import COMPOSE, NGINX_TEMPLATE, app_image  # noqa: E402
from stack_client import free_port, read_count  # noqa: E402

APP_IMAGE = app_image(os.environ)
# Where nginx listens in its container, as its template says.
NGINX_PORT = int(
    re.search(  # type: ignore[union-attr]
        r"listen (\d+) default_server;", NGINX_TEMPLATE.read_text()
    ).group(1)
)
# The shipped sampling ratio, as compose.yaml defaults it, for the tally row's name.
SAMPLE_RATIO = float(
    re.search(  # type: ignore[union-attr]
        r"OTEL_TRACES_SAMPLER_ARG:-([\d.]+)", COMPOSE.read_text()
    ).group(1)
)
# A worktree's TALLY_VERSION keeps its stacks apart from another's on the same engine.
PROJECT_PREFIX = "-".join(
    ["tally-bench", *re.findall(r"[a-z0-9]+", os.environ.get("TALLY_VERSION", "").lower())]
)


@dataclass
class WrkRun:
    requests: int
    rps: float
    p50: float
    p99: float
    errors: int


def sh(*args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if check and result.returncode != 0:
        sys.exit(f"bench: {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def quantity(text: str, units: dict[str, float]) -> float:
    """A number with one of `units` after it ("1.5ms", "12MiB"), in the unit worth 1."""
    match = re.fullmatch(r"([\d.]+)([A-Za-z]+)", text)
    if match is None or match.group(2) not in units:
        sys.exit(f"bench: cannot read {text!r} (units: {', '.join(units)})")
    return float(match.group(1)) * units[match.group(2)]


def seconds(text: str) -> float:
    return quantity(text, {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0})


def wrk(url: str, connections: int, duration: int) -> WrkRun:
    out = sh("wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url)
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    requests = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if len(percentiles) != 2 or requests is None or rps is None:
        sys.exit(f"bench: cannot read wrk's output for {url}:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkRun(
        requests=int(requests.group(1)),
        rps=float(rps.group(1)),
        p50=seconds(percentiles["50"]),
        p99=seconds(percentiles["99"]),
        errors=errors + (int(non_2xx.group(1)) if non_2xx else 0),
    )


class Variant:
    def __init__(
        self,
        name: str,
        slug: str,
        files: list[str],
        tracing: bool,
        env: dict[str, str] | None = None,
        services: tuple[str, ...] = SERVICES,
        probes: bool = True,
    ) -> None:
        self.name = name
        self.services = services
        # False: a control with every health probe off, measured in the open loop only.
        self.probes = probes
        if not probes:
            files = [*files, NO_PROBES]
        self.project = f"{PROJECT_PREFIX}-{slug}"
        self.port = free_port()
        self.host = ""  # nginx's address on the stack's network, once up() has started it
        self.files = [arg for f in files for arg in ("-f", f)]
        self.tracing = tracing
        self.env = {
            **os.environ, "HTTP_PORT": str(self.port),
            "NGINX_RATE_LIMIT": "1000000r/s", "NGINX_RATE_BURST": "1000000", **(env or {}),
        }  # fmt: skip

    def compose(self, *args: str) -> str:
        return sh("docker", "compose", "-p", self.project, *self.files, *args, env=self.env)

    def up(self) -> None:
        self.compose("build", "app")
        # --wait needs a probe on every container; without, nothing waits for Redis (the
        # app answers 503 until it is up) and measure() waits for a first count instead.
        wait = ["--wait"] if self.probes else []
        self.compose("up", "-d", *wait, "redis")
        if self.tracing:
            # An OTLP sink in Tempo's place (Tempo cannot run here), so spans really leave.
            # Without the app image's health probe: that docker exec every 5 s was a
            # cluster of slow answers in the tally rows alone (docs/PERFORMANCE.md).
            sh("docker", "run", "-d", "--no-healthcheck", "--name", f"{self.project}-otlp",
               "--network", f"{self.project}_backend", "--network-alias", "tempo",
               "-v", f"{ROOT}/tests/stack/otlp_receiver.py:/receiver.py:ro",
               APP_IMAGE, "python", "/receiver.py", "--discard")  # fmt: skip
        self.compose("up", "-d", *wait, "--no-deps", *self.services)
        # Load goes to nginx's address on its network, as from a host in front of it: the
        # published port's loopback path runs through docker-proxy, a userland copy that
        # took a fifth of a core at 1,600 req/s, from every variant alike.
        nginx = self.compose("ps", "-q", "nginx").strip()
        template = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
        self.host = sh("docker", "inspect", "-f", template, nginx).split()[0]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{NGINX_PORT}"

    def down(self) -> None:
        sh("docker", "rm", "-f", f"{self.project}-otlp", check=False)
        sh("docker", "compose", "-p", self.project, *self.files, "down", "-v",
           env=self.env, check=False)  # fmt: skip

    def frozen(self, frozen: bool) -> None:
        """Paused (the cgroup freezer) while another variant is measured, so that its
        healthchecks, exporters and timers take no CPU from the one under load."""
        verb = "pause" if frozen else "unpause"
        containers = self.compose("ps", "-q").split()
        if self.tracing:
            containers.append(f"{self.project}-otlp")
        for container in containers:
            # On a busy machine the freezer now and then gives up on a container ("unable
            # to freeze"); it takes it a moment later.
            for _ in range(4):
                result = subprocess.run(
                    ["docker", verb, container], capture_output=True, check=False
                )
                if result.returncode == 0:
                    break
                time.sleep(1)
            else:
                sh("docker", verb, container)

    def rss_mib(self) -> list[float]:
        ids = self.compose("ps", "-q", "app").split()
        out = sh("docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", *ids)
        return [mib(line.split("/")[0].strip()) for line in out.splitlines()]


def mib(text: str) -> float:
    return quantity(text, {"B": 2**-20, "KiB": 2**-10, "MiB": 1, "GiB": 1024})


@dataclass
class Measured:
    """One variant's runs: wrk's at each connection count, the open loop's at the fixed load."""

    closed: dict[int, list[WrkRun]]
    fixed: list[openloop.OpenLoopRun]
    check: str
    rss: list[float]

    def rps(self, connections: int) -> float:
        return statistics.median(r.rps for r in self.closed[connections])

    def p99_at_fixed_load(self) -> float:
        return statistics.median(r.percentile(99) for r in self.fixed)


def measure(variants: list[Variant], pace: Variant) -> dict[Variant, Measured]:
    """All variants up side by side; their runs take turns, so each variant's median comes
    from the same minutes of this machine's drifting speed as the others'. wrk's closed
    loop first (peak throughput; not for the controls), then an open loop at half of
    `pace`'s peak (latency)."""
    try:
        start = {}
        for variant in variants:
            variant.up()
            wrk(f"{variant.url}/count", 32, 3)  # warm up pools and caches
            # Retried with one key: on tally-ha a 503 (no replica acknowledged in time on a
            # busy machine) is the contract's retryable answer, and the read counts once; so
            # is a busy machine's Redis past REDIS_TIMEOUT. A plain INCR may count a timed-out
            # attempt, which the check's slack for requests in flight covers.
            start[variant] = read_count(variant.url, retry_for=READ_RETRY)
            variant.frozen(True)
        closed: dict[Variant, dict[int, list[WrkRun]]] = {v: {} for v in variants}
        fixed: dict[Variant, list[openloop.OpenLoopRun]] = {v: [] for v in variants}
        unmeasured = dict.fromkeys(variants, 0)
        for connections in CONNECTIONS:
            for _ in range(RUNS):
                for variant in (v for v in variants if v.probes):
                    variant.frozen(False)
                    # Unmeasured: the timers that came due during the pause fire now.
                    unmeasured[variant] += wrk(f"{variant.url}/count", connections, 2).requests
                    closed[variant].setdefault(connections, []).append(
                        wrk(f"{variant.url}/count", connections, SECONDS)
                    )
                    variant.frozen(True)
        # At least 1 req/s: a short run on a saturated machine may see the pace serve nothing.
        rate = max(
            1.0, max(statistics.median(r.rps for r in closed[pace][c]) for c in CONNECTIONS) / 2
        )
        for _ in range(RUNS):
            for variant in variants:
                variant.frozen(False)
                unmeasured[variant] += wrk(f"{variant.url}/count", 32, 2).requests
                fixed[variant].append(
                    openloop.offer(variant.host, NGINX_PORT, "/count", rate, SECONDS)
                )
                variant.frozen(True)
        results = {}
        for variant in variants:
            variant.frozen(False)
            # Requests in flight when a wrk run stops still count: the first warm-up's may
            # land after `start` was read, and each later run's after it stopped. The open
            # loop waits for its answers; one that failed may have counted.
            completed = unmeasured[variant] + sum(
                r.requests for runs in closed[variant].values() for r in runs
            )
            completed += sum(r.ok for r in fixed[variant])
            in_flight_bound = 32 + 2 * sum(CONNECTIONS) * RUNS + 32 * RUNS
            in_flight_bound += sum(r.errors for r in fixed[variant])
            delta = read_count(variant.url, retry_for=READ_RETRY) - start[variant] - 1
            exact = completed <= delta <= completed + in_flight_bound
            check = f"{'ok' if exact else 'MISMATCH'} ({delta - completed:+d})"
            results[variant] = Measured(closed[variant], fixed[variant], check, variant.rss_mib())
        return results
    finally:
        for variant in variants:
            variant.down()  # paused or not


def soak(seconds: int) -> None:
    """Memory over a long run: each replica's RSS every 30 s of load; the growth is the floor
    of the last 1.5 minutes against that of the 1.5 minutes after the first (imports, pools,
    caches warmed up)."""
    variant = Variant("tally", "tally", ["compose.yaml"], True)
    variant.up()
    samples, runs = [], []
    try:
        for _ in range(seconds // 30):
            runs.append(wrk(f"{variant.url}/count", 32, 30))
            samples.append(variant.rss_mib())
    finally:
        variant.down()
    # RSS jumps by a few MiB for a sample now and then (a span export, a burst of
    # connections) and falls back; a leak raises the floor. So the growth compares
    # floors: the lowest of the last three samples with the lowest of samples 2-4.
    first = [min(s[n] for s in samples[1:4]) for n in range(len(samples[0]))]
    last = [min(s[n] for s in samples[-3:]) for n in range(len(samples[0]))]
    requests = sum(r.requests for r in runs)
    lines = [
        f"Soak {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: tally, GET /count through"
        f" nginx, 32 connections, {len(runs)} x 30 s ({requests:,} requests,"
        f" {sum(r.errors for r in runs)} errors).",
        "",
        "| replica | RSS every 30 s (MiB) | growth (lowest of the last 3 / of samples 2-4) |",
        "| --- | --- | --- |",
        *(
            f"| {n} | {', '.join(f'{s[n - 1]:.0f}' for s in samples)} | {(b - a) / a:+.1%} |"
            for n, (a, b) in enumerate(zip(first, last, strict=True), 1)
        ),
    ]
    text = "\n".join(lines) + "\n"
    SOAK_RESULTS.write_text(text)
    print(text)


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is missing (make bench installs Debian's wrk)")
    if len(sys.argv) > 1 and sys.argv[1] == "--soak":
        seconds = int(os.environ.get("SOAK_SECONDS", "300"))
        if seconds < 120:  # the growth compares samples 2-4 with the last three
            sys.exit(f"bench: SOAK_SECONDS must be at least 120, got {seconds}")
        soak(seconds)
        return
    tally = Variant(
        f"tally (metrics, tracing {SAMPLE_RATIO:.0%}, JSON logs, exactly-once)",
        "tally",
        ["compose.yaml"],
        True,
    )
    variants = [
        tally,
        # tally with its two per-request costs off: what is left is the rest of the
        # instrumentation (middleware, metrics, request ids, content negotiation).
        Variant(
            "tally-lean (tally, tracing off, no access line)",
            "lean",
            ["compose.yaml"],
            False,
            {"OTEL_SDK_DISABLED": "true", "LOG_LEVEL": "WARNING"},
        ),
        # tally on the HA topology: what Sentinel discovery and the WAIT for a replica cost.
        Variant(
            "tally-ha (tally, Sentinel, WAIT 1 replica)",
            "ha",
            ["compose.yaml", "compose.ha.yaml"],
            True,
            services=HA_SERVICES,
        ),
        Variant(
            "bare Quart + Hypercorn, exactly-once",
            "bare-once",
            ["compose.yaml", "bench/compose.bare.yaml"],
            False,
            {"BARE_INCREMENT": "once"},
        ),
        Variant(
            "bare Quart + Hypercorn, plain INCR",
            "bare-incr",
            ["compose.yaml", "bench/compose.bare.yaml"],
            False,
            {"BARE_INCREMENT": "incr"},
        ),
        Variant(
            "Flask on gunicorn (1 process, 8 threads), plain INCR",
            "flask",
            ["compose.yaml", "bench/compose.flask.yaml"],
            False,
        ),
        # Controls for the open loop: the same two stacks without health probes.
        Variant(
            "tally, no health probes (control)",
            "tally-noprobes",
            ["compose.yaml"],
            True,
            probes=False,
        ),
        Variant(
            "Flask on gunicorn, no health probes (control)",
            "flask-noprobes",
            ["compose.yaml", "bench/compose.flask.yaml"],
            False,
            probes=False,
        ),
    ]
    _, lean, ha, bare_once, bare, flask, tally_noprobes, flask_noprobes = variants
    results = measure(variants, pace=flask)
    rate = results[flask].fixed[0].rate
    header = ["variant", "conns", "req/s", "p50 ms", "p99 ms", "errors", "counter check",
              "RSS per replica (MiB)"]  # fmt: skip
    rows = []
    for variant in variants:
        measured = results[variant]
        rss = ", ".join(f"{m:.0f}" for m in measured.rss)
        for connections in measured.closed:
            runs = measured.closed[connections]
            rows.append([
                variant.name, str(connections), f"{measured.rps(connections):,.0f}",
                f"{statistics.median(r.p50 for r in runs) * 1000:.1f}",
                f"{statistics.median(r.p99 for r in runs) * 1000:.1f}",
                str(sum(r.errors for r in runs)), measured.check, rss,
            ])  # fmt: skip
        fixed = measured.fixed
        rows.append([
            variant.name, f"open loop at {rate:,.0f} req/s",
            f"{statistics.median(r.ok for r in fixed) / SECONDS:,.0f}",
            f"{statistics.median(r.percentile(50) for r in fixed) * 1000:.1f}",
            f"{measured.p99_at_fixed_load() * 1000:.1f}",
            str(sum(r.errors for r in fixed)), measured.check, rss,
        ])  # fmt: skip

    def ratio(a: Variant, b: Variant, connections: int, of: int | None = None) -> str:
        """a's req/s over b's (at `of` connections for b, when given); n/a when b served
        nothing (a short run on a saturated machine)."""
        below = results[b].rps(of or connections)
        return f"{results[a].rps(connections) / below:.2f}" if below else "n/a"

    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: GET /count through nginx,"
        f" 3 replicas; wrk -t2 (closed loop) at each connection count, then an open loop at"
        f" {rate:,.0f} req/s (half of Flask's peak), latency from each request's scheduled"
        f" send time; medians of {RUNS} x {SECONDS} s.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        *(
            f"- at {c} connections: tally / Flask {ratio(tally, flask, c)},"
            f" tally / bare plain INCR {ratio(tally, bare, c)},"
            f" tally / bare exactly-once {ratio(tally, bare_once, c)},"
            f" tally-lean / bare plain INCR {ratio(lean, bare, c)},"
            f" bare plain INCR / Flask {ratio(bare, flask, c)},"
            f" tally-ha / tally {ratio(ha, tally, c)}"
            for c in CONNECTIONS
        ),
        f"- p99 at {rate:,.0f} req/s (open loop): tally"
        f" {results[tally].p99_at_fixed_load() * 1000:.1f} ms, Flask"
        f" {results[flask].p99_at_fixed_load() * 1000:.1f} ms; without health probes:"
        f" tally {results[tally_noprobes].p99_at_fixed_load() * 1000:.1f} ms, Flask"
        f" {results[flask_noprobes].p99_at_fixed_load() * 1000:.1f} ms",
        f"- tally at 128 / at 32 connections: {ratio(tally, tally, 128, of=32)}",
    ]
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
