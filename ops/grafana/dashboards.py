"""Builds tally's Grafana dashboards as JSON: `make dashboards` writes ops/grafana/dashboards/.

Dashboards are code: panels are declared here once, in a few lines each, and the
checked-in JSON is this script's output (a static test fails when they drift).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards"
SLO_GENERATOR = Path(__file__).parent.parent / "prometheus" / "slo.py"
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"
REPLICA = 'replica=~"$replica"'

Panel = dict[str, Any]


def target(expr: str, legend: str = "", ref: str = "A", exemplar: bool = False) -> dict[str, Any]:
    return {
        "datasource": PROMETHEUS,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "refId": ref,
        "exemplar": exemplar,
    }


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    unit: str = "short",
    width: int = 12,
    height: int = 8,
    **extra: Any,
) -> Panel:
    refs = "ABCDEFGH"
    for ref, t in zip(refs, targets, strict=False):
        t["refId"] = ref
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": PROMETHEUS,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "gridPos": {"w": width, "h": height},
        **extra,
    }


def stat(title: str, description: str, expr: str, unit: str = "short") -> Panel:
    return panel("stat", title, description, [target(expr)], unit, width=4, height=4)


def series(title: str, description: str, *targets: dict[str, Any], unit: str = "short") -> Panel:
    return panel("timeseries", title, description, list(targets), unit)


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[Panel],
    variables: list[dict[str, Any]] | None = None,
    tags: tuple[str, ...] = (),
) -> dict[str, Any]:
    x = y = row_height = 0
    for number, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y = 0, y + row_height
            row_height = 0
        p["id"] = number
        p["gridPos"].update({"x": x, "y": y})
        x += w
        row_height = max(row_height, h)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["tally", *tags],
        "editable": False,
        "schemaVersion": 41,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "timezone": "browser",
        "templating": {"list": variables or []},
        "annotations": {"list": []},
        "panels": panels,
    }


def load_slos() -> Any:
    """ops/prometheus/slo.py: the SLOs and windows are declared there, once."""
    spec = importlib.util.spec_from_file_location("slo", SLO_GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def by_replica(expr: str) -> str:
    """A per-target series labelled with its replica id (tally_build_info)."""
    return f'{expr} * on (instance) group_left (replica) tally_build_info{{job="tally", {REPLICA}}}'


replica_variable = {
    "name": "replica",
    "label": "Replica",
    "type": "query",
    "datasource": PROMETHEUS,
    "query": {"query": 'label_values(tally_build_info{job="tally"}, replica)', "refId": "replica"},
    "definition": 'label_values(tally_build_info{job="tally"}, replica)',
    "refresh": 2,
    "multi": True,
    "includeAll": True,
    "allValue": ".+",
    "current": {"text": "All", "value": "$__all"},
    "sort": 1,
}

overview = dashboard(
    "tally-overview",
    "tally / Service overview",
    "RED per route and per replica, traffic share, visits, in-flight and latency with exemplars.",
    [
        stat("Requests/s", "All replicas.", "sum(job:http_requests:rate1m)", "reqps"),
        stat(
            "Error ratio (5m)",
            "Share of 5xx answers; SLO 1%.",
            "sum(job:http_request_errors:ratio_rate5m)",
            "percentunit",
        ),
        stat("p99 /count (5m)", "SLO 500 ms.", "max(job:http_request_duration_seconds:p99)", "s"),
        stat(
            "Visits/s",
            "New visits counted (replays excluded).",
            "sum(job:tally_visits:rate1m)",
            "reqps",
        ),
        stat("Replicas up", "App replicas Prometheus scrapes.", 'sum(up{job="tally"})'),
        stat(
            "In flight", "Requests being answered now.", 'sum(http_requests_in_flight{job="tally"})'
        ),
        series(
            "Requests/s by route",
            "Rate per route template and status.",
            target("sum by (route, status) (route:http_requests:rate1m)", "{{route}} {{status}}"),
            unit="reqps",
        ),
        series(
            "Requests/s by replica",
            "Rate per replica: balancing at a glance.",
            target(f"sum by (replica) (replica:http_requests:rate1m{{{REPLICA}}})", "{{replica}}"),
            unit="reqps",
        ),
        series(
            "Share of traffic by replica",
            "Each replica's share; even is 1/N.",
            target(f"replica:http_requests:share{{{REPLICA}}}", "{{replica}}"),
            unit="percentunit",
        ),
        series(
            "Latency by route",
            "p50, p95 and p99 per route template.",
            target("route:http_request_duration_seconds:p50", "p50 {{route}}"),
            target("route:http_request_duration_seconds:p95", "p95 {{route}}"),
            target("route:http_request_duration_seconds:p99", "p99 {{route}}"),
            unit="s",
        ),
        series(
            "p99 by replica",
            "A slow replica stands out here.",
            target(f"replica:http_request_duration_seconds:p99{{{REPLICA}}}", "{{replica}}"),
            unit="s",
        ),
        series(
            "In flight by replica",
            "Concurrent requests per replica.",
            target(by_replica('http_requests_in_flight{job="tally"}'), "{{replica}}"),
        ),
        panel(
            "heatmap",
            "Latency of /count (exemplars link to traces)",
            "Histogram buckets over time; exemplar dots carry trace ids that open in Tempo.",
            [
                target(
                    "sum by (le) (rate(http_request_duration_seconds_bucket"
                    f'{{job="tally", route="/count"}}[{RATE}]))',
                    "{{le}}",
                    exemplar=True,
                )
            ],
            "s",
            width=24,
            options={
                "calculate": False,
                "yAxis": {"unit": "s"},
                "exemplars": {"color": "rgba(255,0,255,0.7)"},
            },
        ),
        series(
            "Memory (RSS) by replica",
            "Each replica's resident memory (process_resident_memory_bytes).",
            target(by_replica('process_resident_memory_bytes{job="tally"}'), "{{replica}}"),
            unit="bytes",
        ),
        series(
            "CPU by replica",
            "Seconds of CPU per second; 1 is a whole core.",
            target(
                by_replica(f'rate(process_cpu_seconds_total{{job="tally"}}[{RATE}])'), "{{replica}}"
            ),
            unit="percentunit",
        ),
        series(
            "Redis call latency p99",
            "One round trip per /count (EVALSHA).",
            target(
                "histogram_quantile(0.99, sum by (le, command) (rate("
                f'redis_command_duration_seconds_bucket{{job="tally"}}[{RATE}])))',
                "{{command}}",
            ),
            unit="s",
        ),
        series(
            "Redis call errors/s",
            "Timeouts and refusals, by command (each is a 503).",
            target(
                f'sum by (command) (rate(redis_command_errors_total{{job="tally"}}[{RATE}]))',
                "{{command}}",
            ),
            unit="reqps",
        ),
    ],
    [replica_variable],
)

# The node that is the primary now: one node in compose.yaml's stack, whichever the
# Sentinels promoted in compose.ha.yaml's. The counter's figures are the primary's; the
# replicas hold copies, and summing over every node would count each key three times.
PRIMARY = 'redis_instance_info{job="redis", role="master"}'


def on_primary(expr: str) -> str:
    return f"({expr}) and on (instance) {PRIMARY}"


def node(metric: str) -> str:
    return f'{metric}{{job="redis"}}'


def node_rate(metric: str) -> str:
    return f"rate({node(metric)}[{RATE}])"


redis = dashboard(
    "tally-redis",
    "tally / Redis",
    "The counter's store: up, memory against maxmemory, commands, clients, persistence."
    " The counter's figures are the primary's; with replicas, see tally / Redis replication.",
    [
        panel(
            "stat",
            "Redis up",
            "1 when redis_exporter reaches the node; every node with replicas.",
            [target('redis_up{job="redis"}', "{{instance}}")],
            width=4,
            height=4,
        ),
        stat(
            "Memory used / max",
            "The primary's; above 90% the idempotency records start to be evicted.",
            on_primary(
                'redis_memory_used_bytes{job="redis"} / redis_memory_max_bytes{job="redis"}'
            ),
            "percentunit",
        ),
        stat(
            "Keys",
            "The counter plus one idempotency record per recent request.",
            f"sum({on_primary(node('redis_db_keys'))})",
        ),
        stat(
            "Clients",
            "Connected to the primary (the replicas' pools, the exporter, Redis replicas).",
            on_primary('redis_connected_clients{job="redis"}'),
        ),
        stat(
            "AOF last write",
            "1 = ok; 0 means writes are not durable. The lowest of every node.",
            'min(redis_aof_last_write_status{job="redis"})',
        ),
        stat(
            "RDB last save",
            "1 = ok; the lowest of every node.",
            'min(redis_rdb_last_bgsave_status{job="redis"})',
        ),
        series(
            "Commands/s",
            "On the primary, by command.",
            target(
                f"sum by (cmd) ({on_primary(node_rate('redis_commands_total'))})",
                "{{cmd}}",
            ),
            unit="ops",
        ),
        series(
            "Memory",
            "The primary's used against maxmemory.",
            target(on_primary('redis_memory_used_bytes{job="redis"}'), "used"),
            target(on_primary('redis_memory_max_bytes{job="redis"}'), "max"),
            unit="bytes",
        ),
        series(
            "Expired and evicted keys/s",
            "On the primary; evictions mean memory pressure.",
            target(on_primary(f'rate(redis_expired_keys_total{{job="redis"}}[{RATE}])'), "expired"),
            target(on_primary(f'rate(redis_evicted_keys_total{{job="redis"}}[{RATE}])'), "evicted"),
            unit="ops",
        ),
        series(
            "Time per command",
            "Mean seconds per call on the primary, by command.",
            target(
                f"sum by (cmd) ({on_primary(node_rate('redis_commands_duration_seconds_total'))})"
                f" / sum by (cmd) ({on_primary(node_rate('redis_commands_total'))})",
                "{{cmd}}",
            ),
            unit="s",
        ),
    ],
    tags=("redis",),
)

# Only compose.ha.yaml's topology has replicas and Sentinels: its panels are a dashboard
# of their own, tagged `ha`: empty on the one-node stack.
replication = dashboard(
    "tally-redis-replication",
    "tally / Redis replication",
    "The primary, its replicas and the Sentinels (compose.ha.yaml): who is the primary,"
    " how far behind the replicas are, failovers.",
    [
        panel(
            "stat",
            "Primary",
            "The node that takes the writes now.",
            [target(PRIMARY, "{{instance}}")],
            width=4,
            height=4,
            options={"textMode": "name"},
        ),
        stat(
            "Replicas in sync",
            "Replicas connected to the primary. Below 1 the primary refuses increments"
            " (min-replicas-to-write), and /count answers 503.",
            on_primary('redis_connected_slaves{job="redis"}'),
        ),
        stat(
            "Failovers",
            "Sentinel's config epoch: one more per failover since the Sentinels first met.",
            'max(redis_sentinel_master_config_epoch{job="sentinel"})',
        ),
        panel(
            "stat",
            "Sentinels up",
            "1 when redis_exporter reaches the Sentinel. Two of three must agree to fail over.",
            [target('redis_up{job="sentinel"}', "{{instance}}")],
            width=4,
            height=4,
        ),
        stat(
            "Sentinel quorum",
            "1 when the Sentinels can authorize a failover (SENTINEL CKQUORUM).",
            'max(redis_sentinel_master_ckquorum_status{job="sentinel"})',
        ),
        stat(
            "Sentinels in TILT",
            "Sentinels that stopped acting (their clock or the machine stalled).",
            'sum(redis_sentinel_tilt{job="sentinel"})',
        ),
        series(
            "Role by node",
            "1 = primary, 0 = replica: a failover shows as the 1 moving to another node.",
            target(
                'max by (instance) (redis_instance_info{job="redis", role="master"})'
                ' or 0 * max by (instance) (redis_instance_info{job="redis"})',
                "{{instance}}",
            ),
        ),
        series(
            "Replication lag",
            "Seconds since each replica last acknowledged the primary's stream; past 5 s"
            " it no longer counts for min-replicas-to-write.",
            target('redis_connected_slave_lag_seconds{job="redis"}', "{{slave_ip}}"),
            unit="s",
        ),
        series(
            "Replication offset behind the primary",
            "Bytes of the primary's stream each replica has not yet acknowledged.",
            target(
                f"max({on_primary(node('redis_master_repl_offset'))})"
                ' - on () group_right () redis_connected_slave_offset_bytes{job="redis"}',
                "{{slave_ip}}",
            ),
            unit="bytes",
        ),
        series(
            "Replica link",
            "1 while a replica's link to its primary is up.",
            target('redis_master_link_up{job="redis"}', "{{instance}}"),
        ),
    ],
    tags=("redis", "ha"),
)

nginx = dashboard(
    "tally-nginx",
    "tally / Nginx",
    "The load balancer: requests and connections from stub_status.",
    [
        stat(
            "nginx up",
            "1 when nginx-prometheus-exporter reaches stub_status.",
            'nginx_up{job="nginx"}',
        ),
        stat(
            "Requests/s",
            "All requests nginx answered.",
            f'rate(nginx_http_requests_total{{job="nginx"}}[{RATE}])',
            "reqps",
        ),
        stat(
            "Active connections",
            "Client connections open now.",
            'nginx_connections_active{job="nginx"}',
        ),
        series(
            "Requests/s",
            "All requests nginx answered.",
            target(f'rate(nginx_http_requests_total{{job="nginx"}}[{RATE}])', "requests"),
            unit="reqps",
        ),
        series(
            "Connections by state",
            "Reading, writing, waiting (idle keepalive).",
            target('nginx_connections_reading{job="nginx"}', "reading"),
            target('nginx_connections_writing{job="nginx"}', "writing"),
            target('nginx_connections_waiting{job="nginx"}', "waiting"),
        ),
        series(
            "Connections accepted and handled/s",
            "A gap means nginx dropped connections.",
            target(f'rate(nginx_connections_accepted{{job="nginx"}}[{RATE}])', "accepted"),
            target(f'rate(nginx_connections_handled{{job="nginx"}}[{RATE}])', "handled"),
            unit="cps",
        ),
    ],
)


def slo_panels(slo: Any, module: Any) -> list[Panel]:
    name, label = slo.name.capitalize(), f'slo="{slo.name}"'
    budget = f"(1 - slo:objective:ratio{{{label}}})"
    period = f"{module.PERIOD_DAYS}d"
    burn_windows = [w for w in module.RATIO_WINDOWS if w != period]
    return [
        stat(
            f"{name}: error budget left ({period})",
            f"Share of /count {slo.what}, objective {slo.objective:.1%}: 100% is untouched,"
            " 0 spent, below 0 the SLO is missed.",
            f"1 - {module.ratio(period)}{{{label}}} / on (slo) group_left () {budget}",
            "percentunit",
        ),
        stat(
            f"{name}: SLI ({period})",
            f"Share of /count requests {slo.what} over the period.",
            f"1 - {module.ratio(period)}{{{label}}}",
            "percentunit",
        ),
        stat(
            f"{name}: burn alerts firing",
            "Pages and tickets of this SLO firing now (Alertmanager routes them).",
            f'count(ALERTS{{alertstate="firing", {label}}}) or vector(0)',
        ),
        series(
            f"{name}: burn rate by window",
            "Error ratio over each window, in multiples of the budget's even spend: 1 spends"
            f" the budget in exactly {period}; pages at {module.WINDOWS[0].burn_rate:g}x"
            f" ({module.WINDOWS[0].long}).",
            *(
                target(
                    f"{module.ratio(window)}{{{label}}} / on (slo) group_left () {budget}",
                    window,
                )
                for window in burn_windows
            ),
        ),
        series(
            f"{name}: burn alerts",
            "Pending and firing, by severity and long window.",
            target(
                f"count by (severity, window, alertstate) (ALERTS{{{label}}}) or vector(0)",
                "{{severity}} {{window}} {{alertstate}}",
            ),
        ),
    ]


slos = load_slos()
slo = dashboard(
    "tally-slo",
    "tally / SLOs",
    "Error budget left, burn rate per window and the burn alerts of each SLO (docs/SLO.md).",
    [p for s in slos.SLOS for p in slo_panels(s, slos)],
)

DASHBOARDS = {
    "overview.json": overview,
    "redis.json": redis,
    "redis-replication.json": replication,
    "nginx.json": nginx,
    "slo.json": slo,
}


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, board in DASHBOARDS.items():
        (OUT / name).write_text(render(board))
    print(f"wrote {len(DASHBOARDS)} dashboards to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
