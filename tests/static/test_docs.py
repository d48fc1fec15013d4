"""The docs read as a reference: no diary in them (dates, issue and item numbers, commit
hashes, times of day), no link that leads nowhere, and the README's list of tiers is the
Makefile's. Files only, no Docker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.run import CONNECTIONS
from tests.support import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The acceptance check as written: a date (not an ISO timestamp in an example log line),
# an issue number or an "item N".
DIARY = re.compile(r"20\d{2}-\d{2}-\d{2}(?!T\d)|\bissue \d+|\bitem \d+", re.IGNORECASE)
# In prose, outside code blocks (whose example output holds container ids and request ids).
COMMIT = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b")
TIME_OF_DAY = re.compile(r"\b(?:[01]?\d|2[0-3]):[0-5]\d\b")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def prose(path: Path) -> str:
    return FENCE.sub("", path.read_text())


@pytest.mark.parametrize("path", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_the_docs_carry_no_dates_issue_or_item_numbers(path: Path) -> None:
    found = [match.group() for match in DIARY.finditer(path.read_text())]
    assert not found, f"history belongs in git log, figures in the results files: {found}"


@pytest.mark.parametrize("path", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_the_docs_prose_names_no_commit_and_no_time_of_day(path: Path) -> None:
    text = prose(path)
    found = COMMIT.findall(text) + TIME_OF_DAY.findall(text)
    assert not found, f"a commit or a time of day in the prose: {found}"


@pytest.mark.parametrize("path", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_link_of_the_docs_leads_to_a_file_in_the_repository(path: Path) -> None:
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # a URL
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{target} is outside the repository"
        assert resolved.exists(), f"{target} does not exist"


def test_the_readme_lists_the_tiers_make_test_runs_in_its_order() -> None:
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^test:([^#\n]*).*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert target, "no test target in the Makefile"
    prerequisites, recipe = target.groups()
    run = ["lint"] * ("lint" in prerequisites.split()) + re.findall(r"tests/(\w+)", recipe)
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Run the tests\n", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| (\w+) \|", section, re.MULTILINE)
    assert listed[1:] == run  # after the header row's "tier"


def test_the_readmes_price_of_the_server_is_the_latest_bench_runs() -> None:
    """The README names what Hypercorn costs with the ratios bench/results/latest.md has."""
    latest = (ROOT / "bench" / "results" / "latest.md").read_text()
    ratios = [
        re.search(rf"^- at {c} connections: .*?tally / tally-on-uvicorn ([\d.]+)", latest, re.M)
        for c in CONNECTIONS
    ]
    assert all(ratios), "bench/results/latest.md has no tally / tally-on-uvicorn ratios"
    figures = " and ".join(match.group(1) for match in ratios if match)
    readme = " ".join((ROOT / "README.md").read_text().split())
    counts = " and ".join(map(str, CONNECTIONS))
    assert f"tally / tally-on-uvicorn {figures} at {counts} connections" in readme
