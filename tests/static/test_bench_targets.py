"""The targets docs/PERFORMANCE.md states are the ones bench/run.py prints the status of."""

from __future__ import annotations

from bench.run import MAX_RSS_MIB, MIN_OVER_FASTAPI, MIN_OVER_FLASK
from tests.support import ROOT


def test_the_docs_targets_are_the_benchs() -> None:
    doc = (ROOT / "docs" / "PERFORMANCE.md").read_text()
    targets = doc.split("\n## Targets\n", 1)[1].split("\n## ", 1)[0]
    assert f"tally >= {MIN_OVER_FLASK}x Flask" in targets
    assert f"tally >= {MIN_OVER_FASTAPI}x FastAPI" in targets
    assert f"RSS <= {MAX_RSS_MIB:.0f} MiB per replica" in targets
