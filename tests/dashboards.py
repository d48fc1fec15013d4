"""The queries of the checked-in Grafana dashboards, shared by the static and stack tiers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tests.support import ROOT

DASHBOARD_DIR = ROOT / "ops" / "grafana" / "dashboards"
# Template variables resolved to real values, as Grafana would.
VARIABLES = {"$__rate_interval": "1m", "$replica": ".+"}


def dashboards() -> dict[Path, dict[str, Any]]:
    return {path: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def panel_queries(
    tag: str | None = None, without: str | None = None
) -> Iterator[tuple[str, str, str]]:
    """(dashboard uid, panel title, query with variables resolved) for every panel target
    of the dashboards tagged `tag` (all when None) and not tagged `without`."""
    for board in dashboards().values():
        if (tag and tag not in board["tags"]) or (without and without in board["tags"]):
            continue
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for name, value in VARIABLES.items():
                    expr = expr.replace(name, value)
                yield board["uid"], panel["title"], expr


def without_data(
    queries: Iterable[tuple[str, str, str]], query: Callable[[str], list[Any]]
) -> list[str]:
    """The panels among `queries` whose query `query` (a live Prometheus) answers empty."""
    return [f"{uid} / {title}: {expr}" for uid, title, expr in queries if not query(expr)]
