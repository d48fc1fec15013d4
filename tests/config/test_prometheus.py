"""promtool in the pinned Prometheus image: its config, the rules, the rules' unit tests, and
every dashboard query parses as PromQL."""

from __future__ import annotations

import subprocess

import pytest

from tests.dashboards import panel_queries
from tests.support import ROOT, run

PROMETHEUS_DIR = ROOT / "ops" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))


def promtool(*args: str) -> str:
    result = run(
        "docker", "run", "--rm", "-i", "-v", f"{PROMETHEUS_DIR}:/etc/prometheus:ro",
        "--entrypoint", "/bin/promtool", "prom/prometheus:v3.5.3", *args,
    )  # fmt: skip
    return result.stdout + result.stderr


def test_prometheus_config_is_valid() -> None:
    assert "SUCCESS" in promtool("check", "config", "/etc/prometheus/prometheus.yml")


def test_rules_are_valid() -> None:
    out = promtool("check", "rules", *(f"/etc/prometheus/rules/{p.name}" for p in RULE_FILES))
    assert out.count("SUCCESS") == len(RULE_FILES), out


@pytest.mark.parametrize("name", [path.name for path in TEST_FILES])
def test_rule_unit_tests_pass(name: str) -> None:
    assert "SUCCESS" in promtool("test", "rules", f"/etc/prometheus/tests/{name}")


def test_every_panel_query_parses_as_promql() -> None:
    queries = sorted({expr for _, _, expr in panel_queries()})
    script = (
        "while IFS= read -r q; do"
        ' /bin/promtool --experimental promql format "$q" >/dev/null 2>&1 || echo "BAD: $q";'
        " done"
    )
    result = subprocess.run(
        ["docker", "run", "--rm", "-i", "--entrypoint", "/bin/sh", "prom/prometheus:v3.5.3",
         "-c", script],
        input="\n".join(queries) + "\n", capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert result.stdout == "", result.stdout
    assert len(queries) > 20
