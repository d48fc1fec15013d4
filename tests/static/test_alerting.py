"""Alerting read from the files: the secrets render.sh reads, and the SLO doc's burn table."""

from __future__ import annotations

import importlib.util
import re
import sys

from tests.support import ROOT

ALERTMANAGER_DIR = ROOT / "ops" / "alertmanager"


def test_the_secrets_service_stores_exactly_the_files_render_reads() -> None:
    stored = re.search(r'case "\$1" in\n\s+(.+)\)', (ROOT / "ops/secrets/init.sh").read_text())
    assert stored
    read = set(re.findall(r"\$SECRETS/(\w+)", (ALERTMANAGER_DIR / "render.sh").read_text()))
    assert {name.strip() for name in stored.group(1).split("|")} == read


def test_slo_doc_burn_table_matches_the_generator() -> None:
    spec = importlib.util.spec_from_file_location("slo", ROOT / "ops/prometheus/slo.py")
    assert spec is not None
    assert spec.loader is not None
    slo = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = slo  # its dataclasses look their module up there
    spec.loader.exec_module(slo)
    doc = (ROOT / "docs" / "SLO.md").read_text()
    table = doc.split("<!-- burn-table")[1].split("<!-- /burn-table -->")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")][2:]
    expected = [
        f"| {w.severity} | {w.burn_rate:g} | {w.long} | {w.short} | {w.wait} |"
        f" {w.burn_rate * slo.minutes(w.long) / (slo.PERIOD_DAYS * 1440):.0%} |"
        for w in slo.WINDOWS
    ]
    assert rows == expected
