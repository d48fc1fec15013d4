"""The observability overlay, live: each replica a target, every dashboard query answered."""

from __future__ import annotations

from tests.compose_stack import Stack
from tests.dashboards import panel_queries, without_data
from tests.support import wait_until


def test_each_replica_is_its_own_target_and_up(stack: Stack, traffic: None) -> None:
    replicas = {row["ID"][:12] for row in stack.containers("app")}
    wait_until(lambda: len(stack.app_targets_up()) == 3, 30, "3 app targets up in Prometheus")
    targets = stack.app_targets_up()
    assert all(target.startswith("app@") for target in targets)
    info = stack.query('tally_build_info{job="tally"}')
    assert {sample["metric"]["replica"] for sample in info} == replicas


def test_exporters_report_redis_and_nginx(stack: Stack) -> None:
    wait_until(lambda: stack.query("redis_up == 1"), 30, "redis_up == 1")
    wait_until(lambda: stack.query("nginx_connections_active"), 30, "nginx_connections_active")


def test_every_dashboard_query_returns_data(stack: Stack, traffic: None) -> None:
    # Replication's dashboards (tagged ha) have their test with compose.ha.yaml's stack.
    queries = list(panel_queries(without="ha"))
    # Rates over 1m need a few scrapes (every 5 s) before every panel has data, and the
    # SLOs' long windows an evaluation of their group, once a minute, after that.
    wait_until(
        lambda: not without_data(queries, stack.query),
        150,
        "every dashboard query to return data",
        interval=2,
    )
