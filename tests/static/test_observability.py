"""Prometheus, its rules (and the SLO generator) and their tests, Grafana provisioning and
dashboards, read from their files (tests/config runs promtool on them)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboards import DASHBOARD_DIR, dashboards
from tests.support import ROOT

PROMETHEUS_DIR = ROOT / "ops" / "prometheus"
GRAFANA_DIR = ROOT / "ops" / "grafana"


RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))


def test_every_rule_file_has_its_tests() -> None:
    tested = {
        rule_file.split("/")[-1]
        for path in TEST_FILES
        for rule_file in yaml.safe_load(path.read_text())["rule_files"]
    }
    assert tested == {path.name for path in RULE_FILES}


def alerts() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_every_alert_has_summary_description_and_runbook() -> None:
    for alert in alerts():
        annotations = alert["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), alert["alert"]
        assert annotations["runbook_url"].endswith("#" + alert["alert"].lower())


def test_every_alert_has_a_unit_test_that_fires_it_with_its_labels() -> None:
    fired = {
        (case["alertname"], tuple(sorted((k, v) for k, v in alert["exp_labels"].items()
                                         if k in ("severity", "slo", "window"))))
        for path in TEST_FILES
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        for alert in case["exp_alerts"]
    }  # fmt: skip
    for alert in alerts():
        labels = tuple(sorted(alert["labels"].items()))
        assert (alert["alert"], labels) in fired, alert["alert"]


def load_generator(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_checked_in_slo_rules_and_tests_match_their_generator() -> None:
    slo = load_generator(PROMETHEUS_DIR / "slo.py")
    assert slo.RULES.read_text() == slo.render(slo.rules()), "stale: run `make slo`"
    assert slo.TESTS.read_text() == slo.render(slo.tests()), "stale: run `make slo`"


def test_latency_threshold_is_a_bucket_of_the_app_histogram() -> None:
    from service.metrics import LATENCY_BUCKETS

    slo = load_generator(PROMETHEUS_DIR / "slo.py")
    assert float(slo.LATENCY_THRESHOLD) in LATENCY_BUCKETS
    # prometheus-client writes the `le` label as Python's str() of the float.
    assert str(float(slo.LATENCY_THRESHOLD)) == slo.LATENCY_THRESHOLD


def test_prometheus_sends_alerts_to_the_alertmanager_service() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    overlay = yaml.safe_load((ROOT / "compose.observability.yaml").read_text())["services"]
    port = overlay["alertmanager"]["ports"][0].rsplit(":", 1)[1]
    assert targets == [f"alertmanager:{port}"]


def test_checked_in_dashboards_match_their_generator() -> None:
    generator = load_generator(GRAFANA_DIR / "dashboards.py")
    generated = {name: generator.render(board) for name, board in generator.DASHBOARDS.items()}
    checked_in = {path.name: path.read_text() for path in DASHBOARD_DIR.glob("*.json")}
    assert checked_in == generated, "the JSON is stale: run `make dashboards`"


def test_dashboards_have_unique_stable_uids_and_only_provisioned_datasources() -> None:
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yaml").read_text()
    )
    uids = {source["uid"] for source in provisioned["datasources"]}
    assert uids == {"prometheus", "tempo"}
    seen = set()
    for path, board in dashboards().items():
        assert board["uid"].startswith("tally-"), path
        seen.add(board["uid"])
        text = path.read_text()
        used = {
            ds["uid"]
            for panel in board["panels"]
            for ds in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
        }
        assert used <= uids, path
        assert "${DS_" not in text, path
    assert seen == {
        "tally-overview",
        "tally-redis",
        "tally-redis-replication",
        "tally-nginx",
        "tally-slo",
    }


def test_prometheus_exemplars_link_to_tempo_and_tempo_to_prometheus() -> None:
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yaml").read_text()
    )
    by_uid = {source["uid"]: source for source in provisioned["datasources"]}
    links = by_uid["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert links == [{"name": "trace_id", "datasourceUid": "tempo"}]
    assert by_uid["tempo"]["jsonData"]["tracesToMetrics"]["datasourceUid"] == "prometheus"


def test_dashboard_provider_reads_the_mounted_folder() -> None:
    provider = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "tally.yaml").read_text()
    )["providers"][0]
    compose = yaml.safe_load((ROOT / "compose.observability.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./ops/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert provider["folder"] == "tally"


def test_grafana_admin_password_comes_from_a_secret_file() -> None:
    compose = yaml.safe_load((ROOT / "compose.observability.yaml").read_text())
    env = compose["services"]["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


@pytest.mark.parametrize("service", ["grafana", "prometheus", "alertmanager"])
def test_observability_uis_bind_to_loopback_only(service: str) -> None:
    compose = yaml.safe_load((ROOT / "compose.observability.yaml").read_text())
    for port in compose["services"][service]["ports"]:
        assert port.startswith("127.0.0.1:"), port


def test_tempo_config_has_the_receiver_and_storage_the_app_relies_on() -> None:
    tempo = yaml.safe_load((ROOT / "ops" / "tempo" / "tempo.yaml").read_text())
    http = tempo["distributor"]["receivers"]["otlp"]["protocols"]["http"]
    assert http["endpoint"].endswith(":4318")
    storage = tempo["storage"]["trace"]
    assert storage["backend"] == "local"
    assert storage["local"]["path"].startswith("/var/tempo/")
    assert storage["wal"]["path"].startswith("/var/tempo/")
    assert tempo["server"]["http_listen_port"] == 3200  # Grafana's Tempo datasource URL

    overlay = yaml.safe_load((ROOT / "compose.observability.yaml").read_text())["services"]
    assert "tempo-data:/var/tempo" in overlay["tempo"]["volumes"]
    assert "./ops/tempo/tempo.yaml:/etc/tempo/tempo.yaml:ro" in overlay["tempo"]["volumes"]
    assert "-config.file=/etc/tempo/tempo.yaml" in overlay["tempo"]["command"]
    assert overlay["tempo"]["profiles"] == ["observability"]

    app_env = yaml.safe_load((ROOT / "compose.yaml").read_text())["x-app"]["environment"]
    assert app_env["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith("http://tempo:4318}")
