"""Samples one evaluation of the SLO rule groups reads, before and after a change, on one
Prometheus holding the same 31 days of synthetic data: writes bench/results/rule-cost.md.

A real Prometheus (the stack's image) is backfilled with `promtool tsdb
create-blocks-from openmetrics` from a generated file: three replicas' /count counters
(200s and 503s) and latency histogram series at the stack's scrape interval, plus the
series the rules themselves record (the 5m rates once a minute, the ratios the alerts
read). Each rule's expression is then one instant query at the data's end with
`stats=all`, and its `totalQueryableSamples` is what Prometheus read for it; a group's
evaluation reads the sum over its rules. Counting samples, not timing, so the figure does
not depend on this machine's speed.

    uv run --frozen python bench/rule_cost.py [--before REV] [--scrape SECONDS]

REV is the git revision whose ops/prometheus/rules/slo.yml is the "before" (the rules
in the work tree are the "after"). Needs Docker and the prom/prometheus image.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "loadtest")]
from stack_client import free_port  # noqa: E402

RULES = "ops/prometheus/rules/slo.yml"
RESULTS = ROOT / "bench" / "results" / "rule-cost.md"
IMAGE = "prom/prometheus:v3.5.3"
DAYS = 31
# The data's last timestamp: fixed, so that two runs read the same samples.
END = 1_767_225_600  # 2026-01-01T00:00:00Z
REPLICAS = 3
PER_SECOND = 10  # /count requests per replica
ERROR_EVERY = 2000  # one 503 in this many requests
SLOW_EVERY = 500  # one answer over the latency threshold in this many
COUNT = 'job="tally",route="/count",method="GET"'
RECORDED_STEP = 60  # the long group's interval, seconds
# The last revision whose long windows read the raw series.
BEFORE = "7790976"
RATIOS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def counter_lines(
    name: str, labels: str, per_step: float, start: int, scrape: int
) -> Iterator[str]:
    for index, stamp in enumerate(range(start, END + 1, scrape)):
        yield f"{name}{{{labels}}} {int(index * per_step)} {stamp}\n"


def gauge_lines(name: str, labels: str, value: float, since: int, step: int) -> Iterator[str]:
    for stamp in range(since, END + 1, step):
        yield f"{name}{{{labels}}} {value} {stamp}\n"


def openmetrics(scrape: int, days: int) -> Iterator[str]:
    """Every series the SLO rules read, each one's samples in time order, one metric
    name after another (OpenMetrics does not interleave families)."""
    per_step = PER_SECOND * scrape
    start = END - days * 86400
    instances = [f'instance="app@10.0.1.{n}"' for n in range(1, REPLICAS + 1)]
    families: dict[str, list[tuple[str, float]]] = {
        "http_requests_total": [
            (f'{COUNT},{instance},status="{status}"', share * per_step)
            for instance in instances
            for status, share in (("200", 1 - 1 / ERROR_EVERY), ("503", 1 / ERROR_EVERY))
        ],
        "http_request_duration_seconds_count": [
            (f"{COUNT},{instance}", per_step) for instance in instances
        ],
        "http_request_duration_seconds_bucket": [
            (f'{COUNT},{instance},le="0.5"', (1 - 1 / SLOW_EVERY) * per_step)
            for instance in instances
        ],
    }
    for name, series in families.items():
        for labels, step in series:
            yield from counter_lines(name, labels, step, start, scrape)
    total = PER_SECOND * REPLICAS
    shares = {"availability": 1 / ERROR_EVERY, "latency": 1 / SLOW_EVERY}
    recorded = {
        "slo:sli_errors:rate5m": {slo: total * share for slo, share in shares.items()},
        "slo:sli_requests:rate5m": {slo: float(total) for slo in shares},
    }
    for name, values in recorded.items():
        for slo, value in values.items():
            yield from gauge_lines(name, f'job="tally",slo="{slo}"', value, start, RECORDED_STEP)
    # What the alerts read: the ratios, the last ten minutes of them.
    for window in RATIOS:
        for slo, share in shares.items():
            labels = f'job="tally",slo="{slo}"'
            yield from gauge_lines(f"slo:sli_error:ratio_rate{window}", labels, share, END - 600, 5)
    yield "# EOF\n"


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def prometheus(data: Path) -> Iterator[str]:
    """A Prometheus on a loopback port over the backfilled TSDB; removed afterwards."""
    config = data / "prometheus.yml"
    config.write_text("global: {}\n")
    port = free_port()
    name = f"rule-cost-{port}"
    run(
        "docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:9090",
        "-v", f"{data}:/prometheus", IMAGE, "--config.file=/prometheus/prometheus.yml",
        "--storage.tsdb.path=/prometheus/tsdb", "--storage.tsdb.retention.time=10y",
        "--query.max-samples=500000000",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while not ready(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready: {run('docker', 'logs', name)}")
            time.sleep(1)  # opening a month of blocks takes a while on a busy machine
        yield url
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


def samples(url: str, rule: dict[str, Any]) -> int:
    params = {"query": rule["expr"], "time": str(END), "stats": "all"}
    body: dict[str, Any] = httpx.get(f"{url}/api/v1/query", params=params, timeout=300).json()
    # A recording rule with no result would mean the data is not there; an alert is
    # silent on this healthy month.
    if body["status"] != "success" or ("record" in rule and not body["data"]["result"]):
        raise RuntimeError(f"no result for {rule['expr']}: {body}")
    return int(body["data"]["stats"]["samples"]["totalQueryableSamples"])


@dataclass(frozen=True)
class Group:
    name: str
    interval: int  # seconds
    rules: int
    samples: int  # one evaluation

    @property
    def per_minute(self) -> int:
        return self.samples * 60 // self.interval


def seconds(duration: str) -> int:
    return int(duration[:-1]) * {"s": 1, "m": 60}[duration[-1]]


def measure(url: str, rules: dict[str, Any], default_interval: str) -> list[Group]:
    groups = []
    for group in rules["groups"]:
        interval = seconds(group.get("interval", default_interval))
        total = sum(samples(url, rule) for rule in group["rules"])
        groups.append(Group(group["name"], interval, len(group["rules"]), total))
    return groups


def table(title: str, groups: list[Group]) -> str:
    lines = [
        f"### {title}",
        "",
        "| group | interval | rules | samples per evaluation | samples per minute |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for group in groups:
        lines.append(
            f"| {group.name} | {group.interval} s | {group.rules} | {group.samples:,} |"
            f" {group.per_minute:,} |"
        )
    lines.append(
        f"| **all** | | {sum(g.rules for g in groups)} | {sum(g.samples for g in groups):,} |"
        f" {sum(g.per_minute for g in groups):,} |"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="git revision of the old rules")
    parser.add_argument("--scrape", type=int, default=15, help="seconds between samples")
    parser.add_argument("--days", type=int, default=DAYS, help="days of data (a quick try: 1)")
    args = parser.parse_args()
    prometheus_config = yaml.safe_load((ROOT / "ops/prometheus/prometheus.yml").read_text())
    interval = prometheus_config["global"]["evaluation_interval"]
    before = yaml.safe_load(run("git", "-C", str(ROOT), "show", f"{args.before}:{RULES}"))
    after = yaml.safe_load((ROOT / RULES).read_text())
    revision = run("git", "-C", str(ROOT), "rev-parse", "--short", args.before).strip()
    with tempfile.TemporaryDirectory(prefix="rule-cost-") as scratch:
        data = Path(scratch)
        data.chmod(0o777)  # the image runs as nobody
        with (data / "data.om").open("w") as out:
            out.writelines(openmetrics(args.scrape, args.days))
        run(
            "docker", "run", "--rm", "-v", f"{data}:/prometheus", "--entrypoint",
            "/bin/promtool", IMAGE, "tsdb", "create-blocks-from", "openmetrics",
            "--max-block-duration=24h", "/prometheus/data.om", "/prometheus/tsdb",
        )  # fmt: skip
        (data / "data.om").unlink()
        with prometheus(data) as url:
            old = measure(url, before, interval)
            new = measure(url, after, interval)
        # Files the container wrote as nobody: removed by it, not left to this user.
        run("docker", "run", "--rm", "-v", f"{data}:/prometheus", "--entrypoint", "/bin/rm",
            IMAGE, "-rf", "/prometheus/tsdb")  # fmt: skip
    old_total, new_total = sum(g.samples for g in old), sum(g.samples for g in new)
    old_minute, new_minute = sum(g.per_minute for g in old), sum(g.per_minute for g in new)
    RESULTS.write_text(
        "# Samples the SLO rules read\n\n"
        "Generated by `bench/rule_cost.py"
        f" --before {args.before} --scrape {args.scrape}`: {args.days} days of {REPLICAS}"
        f" replicas' /count series at one sample every {args.scrape} s, backfilled into"
        f" `{IMAGE}`; each rule one instant query with `stats=all`"
        " (`totalQueryableSamples`), summed per group. The alerts read recorded ratios"
        " and count a few samples each. A scrape interval shorter than this run's"
        " multiplies the raw samples the short windows (and the old long ones) read; the"
        " long windows now read recorded rates at one sample a minute whatever it is.\n\n"
        f"One evaluation of every group: {old_total:,} samples before, {new_total:,}"
        f" after ({old_total / new_total:.0f}x fewer); per minute, {old_minute:,} before and"
        f" {new_minute:,} after ({old_minute / new_minute:.0f}x fewer).\n\n"
        + table(f"Before: `{RULES}` at {revision}", old)
        + "\n"
        + table("After: the work tree's rules", new)
    )
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
