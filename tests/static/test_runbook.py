"""Every alert has a runbook entry, and its runbook_url points at it."""

from __future__ import annotations

import re

import yaml

from tests.support import ROOT


def test_every_alert_has_a_runbook_entry_its_url_points_at() -> None:
    alerts = [
        rule
        for path in sorted((ROOT / "ops" / "prometheus" / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    runbook = (ROOT / "docs" / "RUNBOOK.md").read_text()
    anchors = {heading.lower() for heading in re.findall(r"^## (\S+)$", runbook, re.MULTILINE)}
    assert alerts
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/RUNBOOK.md", url
        assert anchor == alert["alert"].lower(), url
        assert anchor in anchors, f"no runbook entry for {alert['alert']}"
    for section in re.split(r"^## ", runbook, flags=re.MULTILINE)[1:]:
        assert all(part in section for part in ("**Means**", "**Confirm**", "**Do**")), section[:40]
