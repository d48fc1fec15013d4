"""make bench: tally with everything on against bare Quart, Flask and FastAPI baselines.

Ten variants, each 3 replicas behind nginx: tally; tally-lean (tracing off, no access
line: what those two cost); tally-ha (compose.ha.yaml: Sentinel and a WAIT for one
replica after each increment, what high availability costs); bare Quart + Hypercorn
with the exactly-once script and with a plain INCR (bench/bare.py: the framework's own
baseline, and the script's cost); Flask on gunicorn with a plain INCR; FastAPI on
uvicorn with a plain INCR (bench/fastapi/: what a Python user would pick for this job
today); tally's own image, everything on, served by uvicorn instead of Hypercorn
(bench/compose.uvicorn.yaml: what the server costs tally). Those last two are
measurements only: neither is shipped, and neither is a supported way to run tally. A
candidate: tally's image with hiredis added (bench/compose.hiredis.yaml), the A/B that
decides whether tally adopts redis-py's C reply parser. And tally with REDIS_COALESCE
off (bench/compose.uncoalesced.yaml: a round trip per increment), what coalescing saves.
Each container's CPU time is read from its cgroup around every measured run, so the
results hold CPU per request per component (replicas, nginx, Redis), and, with Redis's
own time per exactly-once script call (INFO commandstats), a capacity model: how many
app hosts one Redis primary serves. Peak throughput
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
writes the series and the growth to bench/results/soak.md. `--records` (make
bench-records) holds tally at the bench's peak (wrk at the connection count that peaked
on a probe stack) for RECORDS_SECONDS (600) with keyless traffic (nginx makes up each
id) and again with an Idempotency-Key per request, each on a fresh stack (a closed loop:
the open loop's Python client costs the 2-core stack more CPU per request than wrk, so
it cannot offer the peak), and reads Redis's memory, keys and
evictions: bytes per exactly-once record, memory per sustained request/s, and the rate
at which maxmemory starts evicting records; bench/results/records.md.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.md"
SOAK_RESULTS = ROOT / "bench" / "results" / "soak.md"
RECORDS_RESULTS = ROOT / "bench" / "results" / "records.md"
CONNECTIONS = (32, 128)
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
SERVICES = ("redis", "app", "nginx")
# The open loop's controls add this override last: every health probe off.
NO_PROBES = "bench/compose.noprobes.yaml"
# The two uvicorn rows' overrides; the second extends the app image named BENCH_APP_IMAGE.
FASTAPI = "bench/compose.fastapi.yaml"
UVICORN = "bench/compose.uvicorn.yaml"
# The candidate row: tally's image with hiredis added (it too extends BENCH_APP_IMAGE).
HIREDIS = "bench/compose.hiredis.yaml"
# tally as shipped but with REDIS_COALESCE off: what coalescing saves.
UNCOALESCED = "bench/compose.uncoalesced.yaml"
# The components whose CPU per request the results break down, by compose service.
COMPONENTS = ("app", "nginx", "redis")
# The targets each run states the status of (docs/PERFORMANCE.md, "Targets"): tally's
# req/s over Flask's and over FastAPI's at least these, at each connection count; its p99 at
# the fixed load no higher than Flask's; each replica's RSS at most MAX_RSS_MIB.
MIN_OVER_FLASK = 1.25
MIN_OVER_FASTAPI = 0.65
MAX_RSS_MIB = 80.0
# Where the cgroup file systems are mounted (cgroup v1 hierarchies, or v2's unified one).
CGROUP_ROOT = Path("/sys/fs/cgroup")
# compose.ha.yaml: a primary, two replicas, three Sentinels; WAIT 1 after each increment.
HA_SERVICES = ("redis", "redis-2", "redis-3", "sentinel-1", "sentinel-2", "sentinel-3",
               "app", "nginx")  # fmt: skip
# The records step: seconds between its readings of Redis during a hold, and the kinds of
# traffic it holds (keyed: an Idempotency-Key per request; keyless: nginx makes up the id).
RECORDS_SAMPLE = 30.0
RECORD_KINDS = ("keyless", "keyed")
# Seconds a read of the counter is retried with its one Idempotency-Key.
READ_RETRY = 15.0
sys.path[:0] = [str(ROOT), str(ROOT / "loadtest")]
from bench import openloop  # noqa: E402
from ops.configuration import COMPOSE, NGINX_TEMPLATE, app_image  # noqa: E402
from service.request_id import IDEMPOTENCY_HEADER  # noqa: E402
from stack_client import free_port, read_count  # noqa: E402

# wrk's script for keyed traffic: an Idempotency-Key of its own on every request, as a
# client's (the run's start, wrk's thread and the thread's count keep each one unique).
KEYED_SCRIPT = f"""
local started, threads = tostring(os.time()), 0
function setup(thread)
  threads = threads + 1
  thread:set("prefix", "bench-" .. started .. "-" .. threads .. "-")
end
local sent = 0
function request()
  sent = sent + 1
  return wrk.format(nil, nil, {{["{IDEMPOTENCY_HEADER}"] = prefix .. sent}})
end
"""

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


def ratio(above: float, below: float) -> str:
    """above / below to two places; n/a when below is 0 (a short run on a saturated
    machine may serve nothing) or unknown (NaN)."""
    return f"{above / below:.2f}" if below and not math.isnan(below) else "n/a"


def cgroup_cpu_file(proc_cgroup: str, root: Path = CGROUP_ROOT) -> Path | None:
    """The file counting a process's CPU time, from its /proc/PID/cgroup: cgroup v1's
    cpuacct.usage in the cpuacct hierarchy (mounted as `cpuacct`, alone or a link to
    `cpu,cpuacct`), else cgroup v2's cpu.stat in the unified one (at the root, or at
    `unified` on a hybrid host). None when neither is named."""
    unified = None
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            return root / "cpuacct" / path.lstrip("/") / "cpuacct.usage"
        if controllers == "":
            unified = path.lstrip("/")
    if unified is None:
        return None
    base = root / "unified" if (root / "unified").is_dir() else root
    return base / unified / "cpu.stat"


def cpu_seconds(text: str) -> float:
    """A cgroup's CPU time in seconds, from cpuacct.usage (nanoseconds) or cpu.stat."""
    usec = re.search(r"^usage_usec (\d+)$", text, re.M)
    return int(usec.group(1)) / 1e6 if usec else int(text.strip()) / 1e9


def redis_info(text: str) -> dict[str, str]:
    """INFO's `field:value` lines (any sections), the comments and blank lines left out."""
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep and not name.startswith("#"):
            fields[name] = value
    return fields


def usec_per_call(info: dict[str, str], command: str) -> float:
    """Redis's own time per call of `command`, from INFO commandstats; NaN when not called."""
    stats = info.get(f"cmdstat_{command}")
    if stats is None:
        return math.nan
    return float(dict(item.split("=", 1) for item in stats.split(","))["usec_per_call"])


@dataclass(frozen=True)
class Capacity:
    """How far one Redis primary goes, from CPU per request in microseconds: app-side
    (the replicas' and nginx's) and Redis's (its container's: commands, I/O, AOF).
    Redis runs commands on one thread, so one core's worth of its CPU is its ceiling."""

    app_us: float
    redis_us: float
    host_cores: int

    @property
    def redis_ceiling(self) -> float:
        """Requests a second one Redis primary serves with a core to itself."""
        return 1e6 / self.redis_us

    @property
    def host_rate(self) -> float:
        """Requests a second one app host (nginx and replicas on every core) serves."""
        return self.host_cores * 1e6 / self.app_us

    @property
    def hosts(self) -> float:
        """App hosts one Redis primary serves before Redis is the limit."""
        return self.redis_ceiling / self.host_rate


@dataclass(frozen=True)
class RedisMemory:
    """What the records step reads from Redis: INFO memory and stats, and DBSIZE."""

    used: int  # used_memory, bytes
    keys: int  # DBSIZE
    evicted: int  # evicted_keys since Redis started
    maxmemory: int  # bytes; 0 is no limit

    @classmethod
    def parse(cls, info: str, dbsize: str) -> RedisMemory:
        fields = redis_info(info)
        return cls(
            used=int(fields["used_memory"]),
            keys=int(dbsize.strip()),
            evicted=int(fields["evicted_keys"]),
            maxmemory=int(fields["maxmemory"]),
        )


@dataclass(frozen=True)
class Records:
    """One hold at a steady rate: Redis before it (a fresh stack, no records) and at its
    end, and the rate the stack answered. Records made in the last `lifetime` seconds are
    alive at the end, so a hold longer than the records' window measures the window too."""

    before: RedisMemory
    after: RedisMemory
    peak_used: int  # the highest used_memory read during the hold
    rate: float  # answered requests a second
    seconds: float  # the hold's length
    errors: int

    @property
    def records(self) -> int:
        return self.after.keys - self.before.keys

    @property
    def bytes_per_record(self) -> float:
        if self.records <= 0:
            return math.nan
        return (self.after.used - self.before.used) / self.records

    @property
    def lifetime(self) -> float:
        """Seconds a record lives: the records alive at the end over the rate they were made."""
        return self.records / self.rate if self.rate else math.nan

    @property
    def window_reached(self) -> bool:
        """False while no record had expired yet (a hold shorter than the window): then
        `lifetime` is the hold's length, a lower bound, and so are the figures from it."""
        return self.lifetime < 0.9 * self.seconds

    @property
    def evicted(self) -> int:
        return self.after.evicted - self.before.evicted

    @property
    def exact(self) -> bool:
        """The hold measured the records' lifetime: it outlasted their window, and Redis
        did not cut it short by evicting."""
        return self.window_reached and not self.evicted

    @property
    def memory_per_rps(self) -> float:
        """Bytes of Redis memory each sustained request a second holds."""
        return self.bytes_per_record * self.lifetime

    @property
    def eviction_rate(self) -> float:
        """The sustained rate at which the records fill maxmemory: past it Redis evicts."""
        if not self.after.maxmemory:
            return math.inf
        return (self.after.maxmemory - self.before.used) / self.memory_per_rps


def wrk(url: str, connections: int, duration: int, script: Path | None = None) -> WrkRun:
    """wrk's closed loop on `url`; `script`: a Lua file that makes each request."""
    scripted = ["-s", str(script)] if script else []
    out = sh("wrk", "-t2", f"-c{connections}", f"-d{duration}s", *scripted, "--latency", url)
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
        # Each component's containers' CPU time files, once up() has started them.
        self.cpu_files: dict[str, list[Path]] = {}
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
        for component in COMPONENTS:
            files = []
            for container in self.compose("ps", "-q", component).split():
                pid = sh("docker", "inspect", "-f", "{{.State.Pid}}", container).strip()
                found = cgroup_cpu_file(Path(f"/proc/{pid}/cgroup").read_text())
                if found is not None and found.is_file():
                    files.append(found)
            self.cpu_files[component] = files

    def cpu(self) -> dict[str, float]:
        """CPU seconds each component's containers have used so far; a component whose
        cgroup files this host does not show is left out."""
        return {
            component: sum(cpu_seconds(f.read_text()) for f in files)
            for component, files in self.cpu_files.items()
            if files
        }

    def redis_memory(self) -> RedisMemory:
        return RedisMemory.parse(
            self.redis_cli("INFO", "memory", "stats"), self.redis_cli("DBSIZE")
        )

    def redis_cli(self, *command: str) -> str:
        """A command to the stack's Redis as its read-only statistics user (the exporter's)."""
        login = 'REDISCLI_AUTH="$(cat /run/secrets/redis_exporter_password)"'
        return self.compose(
            "exec", "-T", "redis", "sh", "-c",
            f'{login} exec redis-cli --user exporter --no-auth-warning "$@"', "redis-cli",
            *command,
        )  # fmt: skip

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
    # CPU microseconds per request of each component, at each connection count.
    cpu: dict[int, dict[str, float]]
    # Redis's own time per call of the exactly-once script (NaN for a plain INCR).
    evalsha_us: float

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
        cpu: dict[Variant, dict[int, dict[str, float]]] = {v: {} for v in variants}
        fixed: dict[Variant, list[openloop.OpenLoopRun]] = {v: [] for v in variants}
        unmeasured = dict.fromkeys(variants, 0)
        for connections in CONNECTIONS:
            for _ in range(RUNS):
                for variant in (v for v in variants if v.probes):
                    variant.frozen(False)
                    # Unmeasured: the timers that came due during the pause fire now.
                    unmeasured[variant] += wrk(f"{variant.url}/count", connections, 2).requests
                    before = variant.cpu()
                    run = wrk(f"{variant.url}/count", connections, SECONDS)
                    used = cpu[variant].setdefault(connections, {})
                    for component, spent in variant.cpu().items():
                        used[component] = used.get(component, 0.0) + spent - before[component]
                    closed[variant].setdefault(connections, []).append(run)
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
            try:
                delta = read_count(variant.url, retry_for=READ_RETRY) - start[variant] - 1
            except OSError as exc:
                # The run's figures stand; this variant's check failed, and says why.
                print(f"bench: {variant.name}: the counter did not answer: {exc}", file=sys.stderr)
                check = f"NO READ ({exc})"
            else:
                exact = completed <= delta <= completed + in_flight_bound
                check = f"{'ok' if exact else 'MISMATCH'} ({delta - completed:+d})"
            per_request = {}
            for connections, used in cpu[variant].items():
                served = sum(r.requests for r in closed[variant][connections])
                per_request[connections] = {
                    component: spent * 1e6 / served if served else math.nan
                    for component, spent in used.items()
                }
            stats = redis_info(variant.redis_cli("INFO", "commandstats"))
            results[variant] = Measured(
                closed[variant], fixed[variant], check, variant.rss_mib(), per_request,
                usec_per_call(stats, "evalsha"),
            )  # fmt: skip
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


def cpu_table(variants: list[Variant], results: dict[Variant, Measured]) -> list[str]:
    """CPU per request by component, from each container's cgroup over the measured runs."""
    lines = [
        "CPU per request (µs, each component's containers together, over the measured runs;"
        " wrk's own CPU is in none of them):",
        "",
        "| variant | conns | replicas | nginx | Redis | all three |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for variant in variants:
        for connections, used in results[variant].cpu.items():
            cells = [f"{used[c]:.0f}" if c in used else "n/a" for c in COMPONENTS]
            total = f"{sum(used.values()):.0f}" if len(used) == len(COMPONENTS) else "n/a"
            lines.append(f"| {variant.name} | {connections} | {' | '.join(cells)} | {total} |")
    return lines


def capacity_model(tally: Measured) -> list[str]:
    """The capacity model docs/PERFORMANCE.md explains, from tally's figures in this run."""
    cores = os.cpu_count() or 1
    lines = [
        'Capacity model (docs/PERFORMANCE.md, "Capacity"), from tally\'s rows above; an app'
        f" host is one like this one ({cores} cores, nginx and replicas on all of them):",
        "",
        f"- Redis's own time per exactly-once script call (INFO commandstats, evalsha):"
        f" {tally.evalsha_us:.1f} µs, so at most {1e6 / tally.evalsha_us:,.0f}"
        " calls a second on one core if all else (network, parsing, AOF) were free",
    ]
    for connections, used in tally.cpu.items():
        if len(used) < len(COMPONENTS) or min(used.values()) <= 0:
            lines.append(f"- at {connections} connections: no cgroup CPU figures on this host")
            continue
        model = Capacity(used["app"] + used["nginx"], used["redis"], cores)
        lines.append(
            f"- at {connections} connections: app side {model.app_us:.0f} µs a request"
            f" (replicas {used['app']:.0f}, nginx {used['nginx']:.0f}), Redis"
            f" {model.redis_us:.0f} µs; one Redis primary: {model.redis_ceiling:,.0f} req/s;"
            f" one app host: {model.host_rate:,.0f} req/s; app hosts per Redis primary:"
            f" {model.hosts:.1f}"
        )
    return lines


def hold(variant: Variant, connections: int, seconds: int, keyed: bool) -> Records:
    """wrk at `connections` on `variant` for `seconds`, Redis read before, every
    RECORDS_SAMPLE seconds, and at the end."""
    before = variant.redis_memory()
    peak = before.used
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(1) as pool:
        script = Path(scratch, "keyed.lua")
        script.write_text(KEYED_SCRIPT)
        loaded = pool.submit(
            wrk, f"{variant.url}/count", connections, seconds, script if keyed else None
        )
        while True:
            try:
                run = loaded.result(timeout=RECORDS_SAMPLE)
                break
            except TimeoutError:
                peak = max(peak, variant.redis_memory().used)
    elapsed = time.monotonic() - start
    after = variant.redis_memory()
    return Records(before, after, max(peak, after.used), run.rps, elapsed, run.errors)


def records(seconds: int) -> None:
    """Each kind of traffic held at the bench's peak (wrk at the connection count that
    peaked on a stack of its own) on a fresh stack; bench/results/records.md."""
    probe = Variant("tally", "records-peak", ["compose.yaml"], True)
    try:
        probe.up()
        wrk(f"{probe.url}/count", 32, 3)  # warm up pools and caches
        peaks = {c: wrk(f"{probe.url}/count", c, SECONDS).rps for c in CONNECTIONS}
    finally:
        probe.down()
    connections = max(peaks, key=lambda c: peaks[c])
    source = (
        f"wrk at {connections} connections, where it peaked on a probe stack"
        f" ({peaks[connections]:,.0f} req/s; {' and '.join(map(str, CONNECTIONS))} tried)"
    )
    held = {}
    for kind in RECORD_KINDS:
        variant = Variant(f"tally, {kind}", f"records-{kind}", ["compose.yaml"], True)
        try:
            variant.up()
            held[kind] = hold(variant, connections, seconds, keyed=kind == "keyed")
        finally:
            variant.down()
    text = "\n".join(records_report(held, source, seconds)) + "\n"
    RECORDS_RESULTS.write_text(text)
    print(text)


def records_report(held: dict[str, Records], source: str, seconds: int) -> list[str]:
    maxmemory = next(iter(held.values())).after.maxmemory
    lines = [
        f"Records {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: tally as shipped,"
        f" GET /count through nginx, {source}, for {seconds} s per kind of traffic, each on"
        " a fresh stack; Redis read before and after (INFO memory, INFO stats, DBSIZE);"
        f" maxmemory {maxmemory / 2**20:,.0f} MiB (ops/redis/redis.conf). keyless: nginx makes"
        " up each request's id; keyed: each request carries an Idempotency-Key of its own.",
        "",
        "| traffic | answered req/s | errors | records at the end | used_memory before / end"
        " / peak (MiB) | bytes per record | record lifetime (s) | memory per sustained req/s"
        " | evicted keys | maxmemory evicts from (req/s) |",
        "|" + " --- |" * 10,
    ]
    for kind, hold in held.items():
        bound = "" if hold.exact else "≥ "
        used = (hold.before.used, hold.after.used, hold.peak_used)
        lines.append(
            f"| {kind} | {hold.rate:,.0f} | {hold.errors} | {hold.records:,}"
            f" | {' / '.join(f'{u / 2**20:,.1f}' for u in used)} | {hold.bytes_per_record:.0f}"
            f" | {bound}{hold.lifetime:,.1f} | {bound}{hold.memory_per_rps / 1024:,.1f} KiB"
            f" | {hold.evicted} | {'≤ ' if bound else ''}{hold.eviction_rate:,.0f} |"
        )
    lines.append("")
    for kind, hold in held.items():
        verdict = f"yes, {hold.evicted:,} keys" if hold.evicted else "no"
        target = f" (target: none evicted, {met(not hold.evicted)})" if kind == "keyless" else ""
        lines.append(f"- {kind}: did Redis evict at {hold.rate:,.0f} req/s? {verdict}{target}")
        if hold.evicted:
            lines.append(
                f"- {kind}: the records filled maxmemory and Redis evicted the oldest early,"
                " so the lifetime it kept them and memory per req/s are lower bounds, and the"
                " rate at which it starts evicting is at most the held rate (raise maxmemory,"
                " or lower IDEMPOTENCY_TTL, to keep this traffic's whole window)"
            )
        elif not hold.window_reached:
            lines.append(
                f"- {kind}: no record expired within the {hold.seconds:.0f} s hold, so its"
                " lifetime and memory per req/s are lower bounds (hold longer than the window)"
            )
    return lines


class Lineup(NamedTuple):
    """The variants of one run, in their turn order."""

    tally: Variant
    lean: Variant
    ha: Variant
    bare_once: Variant
    bare: Variant
    flask: Variant
    fastapi: Variant
    uvicorn: Variant
    hiredis: Variant
    uncoalesced: Variant
    tally_noprobes: Variant
    flask_noprobes: Variant


def lineup() -> Lineup:
    tally = Variant(
        f"tally (metrics, tracing {SAMPLE_RATIO:.0%}, JSON logs, exactly-once)",
        "tally",
        ["compose.yaml"],
        True,
    )
    return Lineup(
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
        Variant(
            "FastAPI on uvicorn (uvloop, httptools), plain INCR",
            "fastapi",
            ["compose.yaml", FASTAPI],
            False,
        ),
        # tally's image as measured in the first row, served by uvicorn: after that row in
        # this list, since its image is built FROM the one that row's up() builds.
        Variant(
            "tally on uvicorn (tally's image, everything on; not a supported way to run it)",
            "uvicorn",
            ["compose.yaml", UVICORN],
            True,
            {"BENCH_APP_IMAGE": APP_IMAGE},
        ),
        # A candidate, measured before it is adopted: the same image with hiredis added.
        Variant(
            "tally with hiredis (tally's image plus redis-py's C reply parser; a candidate)",
            "hiredis",
            ["compose.yaml", HIREDIS],
            True,
            {"BENCH_APP_IMAGE": APP_IMAGE},
        ),
        # tally as shipped with a round trip per increment: what coalescing saves.
        Variant(
            "tally uncoalesced (tally, REDIS_COALESCE=false: a round trip per increment)",
            "uncoalesced",
            ["compose.yaml", UNCOALESCED],
            True,
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
    )


def report(variants: Lineup, results: dict[Variant, Measured]) -> str:
    """The results file: the table, the ratios, CPU per request and the capacity model."""
    (tally, lean, ha, bare_once, bare, flask, fastapi, uvicorn, hiredis, uncoalesced,
     tally_noprobes, flask_noprobes) = variants  # fmt: skip
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

    def rps_ratio(a: Variant, b: Variant, connections: int, of: int | None = None) -> str:
        """a's req/s over b's (at `of` connections for b, when given)."""
        return ratio(results[a].rps(connections), results[b].rps(of or connections))

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
            f"- at {c} connections: tally / Flask {rps_ratio(tally, flask, c)},"
            f" tally / FastAPI {rps_ratio(tally, fastapi, c)},"
            f" tally / tally-on-uvicorn {rps_ratio(tally, uvicorn, c)},"
            f" tally / bare plain INCR {rps_ratio(tally, bare, c)},"
            f" tally / bare exactly-once {rps_ratio(tally, bare_once, c)},"
            f" tally-lean / bare plain INCR {rps_ratio(lean, bare, c)},"
            f" bare plain INCR / Flask {rps_ratio(bare, flask, c)},"
            f" tally-ha / tally {rps_ratio(ha, tally, c)},"
            f" tally-with-hiredis / tally {rps_ratio(hiredis, tally, c)},"
            f" tally / tally-uncoalesced {rps_ratio(tally, uncoalesced, c)}"
            for c in CONNECTIONS
        ),
        f"- p99 at {rate:,.0f} req/s (open loop): tally"
        f" {results[tally].p99_at_fixed_load() * 1000:.1f} ms, Flask"
        f" {results[flask].p99_at_fixed_load() * 1000:.1f} ms; without health probes:"
        f" tally {results[tally_noprobes].p99_at_fixed_load() * 1000:.1f} ms, Flask"
        f" {results[flask_noprobes].p99_at_fixed_load() * 1000:.1f} ms",
        f"- tally at 128 / at 32 connections: {rps_ratio(tally, tally, 128, of=32)}",
        "",
        *targets(variants, results),
        "",
        *cpu_table([v for v in variants if v.probes], results),
        "",
        *capacity_model(results[tally]),
    ]
    return "\n".join(lines) + "\n"


def met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def targets(variants: Lineup, results: dict[Variant, Measured]) -> list[str]:
    """Each target's status in this run and, for one missed, what this run measured of its
    reason: for throughput, the server's share (tally's image on uvicorn against the
    same peer, and the replicas' CPU per request on each server); for the p99, the same
    two stacks without health probes (docs/PERFORMANCE.md, "The open loop's tail")."""
    tally, flask, fastapi, uvicorn = (
        results[variants.tally],
        results[variants.flask],
        results[variants.fastapi],
        results[variants.uvicorn],
    )
    lines = [
        "| target | status in this run | measured reason, when missed |",
        "| --- | --- | --- |",
    ]

    def over(a: Measured, b: Measured) -> str:
        """a's req/s over b's at each connection count ("1.02 and 0.98")."""
        return " and ".join(ratio(a.rps(c), b.rps(c)) for c in CONNECTIONS)

    def replicas_cpu(m: Measured) -> str:
        return " and ".join(f"{m.cpu[c].get('app', math.nan):.0f} µs" for c in CONNECTIONS)

    for name, other, floor in (
        ("Flask", flask, MIN_OVER_FLASK),
        ("FastAPI", fastapi, MIN_OVER_FASTAPI),
    ):
        ok = all(other.rps(c) and tally.rps(c) / other.rps(c) >= floor for c in CONNECTIONS)
        reason = (
            ""
            if ok
            else f"the server: tally's own image on uvicorn / {name} {over(uvicorn, other)};"
            f" the replicas' CPU per request {replicas_cpu(tally)} on Hypercorn,"
            f" {replicas_cpu(uvicorn)} on uvicorn"
        )
        lines.append(
            f"| tally / {name} >= {floor} at {' and '.join(map(str, CONNECTIONS))} connections"
            f" | {met(ok)}: {over(tally, other)} | {reason} |"
        )
    p99, flask_p99 = tally.p99_at_fixed_load(), flask.p99_at_fixed_load()
    bare = [results[v].p99_at_fixed_load() * 1000 for v in (variants.tally_noprobes,
                                                            variants.flask_noprobes)]  # fmt: skip
    reason = (
        ""
        if p99 <= flask_p99
        else f"without health probes (the controls): tally {bare[0]:.1f} ms, Flask {bare[1]:.1f} ms"
    )
    lines.append(
        f"| tally's p99 at the fixed load <= Flask's | {met(p99 <= flask_p99)}:"
        f" {p99 * 1000:.1f} ms against {flask_p99 * 1000:.1f} ms | {reason} |"
    )
    rss = tally.rss
    lines.append(
        f"| RSS per replica of tally <= {MAX_RSS_MIB:.0f} MiB, after the runs"
        f" | {met(max(rss) <= MAX_RSS_MIB)}: {', '.join(f'{m:.0f}' for m in rss)} MiB | |"
    )
    return lines


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is missing (make bench installs Debian's wrk)")
    if len(sys.argv) > 1 and sys.argv[1] == "--soak":
        seconds = int(os.environ.get("SOAK_SECONDS", "300"))
        if seconds < 120:  # the growth compares samples 2-4 with the last three
            sys.exit(f"bench: SOAK_SECONDS must be at least 120, got {seconds}")
        soak(seconds)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--records":
        hold_for = os.environ.get("RECORDS_SECONDS", "600")
        if not hold_for.isdigit() or int(hold_for) < 1:
            sys.exit(f"bench: RECORDS_SECONDS must be a whole number of seconds, got {hold_for!r}")
        records(int(hold_for))
        return
    variants = lineup()
    text = report(variants, measure(list(variants), pace=variants.flask))
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
