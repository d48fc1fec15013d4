"""The reliability results file: tables the fault and swarm tiers measured, linked by the docs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from tests.support import ROOT

RESULTS = ROOT / "docs" / "results" / "reliability.md"

PREAMBLE = """\
# Reliability results

Generated: do not edit. Each table is rewritten whole by the test run that measures it,
and the line under its title names that run: `make reliability` writes the fault tier's
tables, `make test-swarm` the swarm tier's, `make test` every tier's. A table stays as
its last run left it until that run comes again.
[RELIABILITY.md](../RELIABILITY.md) says what each column means and what the tests assert.
"""

HEADING = re.compile(r"^## (.+)$", re.MULTILINE)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table: the header, the rule, one line per row (no trailing newline).

    Each cell is `str(cell)`; format numbers before (`f"{seconds:.2f}"`). A `|` in a cell
    is escaped; a row with another number of cells than the header, or a cell with a line
    break, raises ValueError.
    """
    lines = [_line(header), "|" + " --- |" * len(header)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"{len(row)} cells for {len(header)} columns: {row!r}")
        lines.append(_line(row))
    return "\n".join(lines)


def record_table(
    name: str,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    path: Path = RESULTS,
    terminal: Any = None,
) -> Path:
    """Write one measured table into the reliability results file and return its path.

    - `name` is the table's title, written as a `## name` heading. The table of that name
      already in the file is replaced whole by this call's rows (a run's table is never
      merged with an earlier run's); tables of other names stay as they were, in their
      order; a new name goes last. Use a fixed, human title ("Faults under load through
      nginx"): a title that changes between runs leaves the old table behind.
    - `header` and `rows` are as `markdown_table` takes them (same cell count, no line
      breaks, ValueError otherwise, before the file is touched). No rows: nothing is
      written, and the file's existing table of that name stays.
    - Under the heading goes one line saying how the figures were made: the time (UTC, to
      the minute), the commit (and whether the worktree had uncommitted changes), the
      pytest command, the machine's CPU count and its load average at the end, so a reader
      can weigh the times. The file's preamble is rewritten on every call.
    - With `terminal` (pytest's terminal reporter), the table is printed too, under its
      name, with the path it went to.
    - The file is replaced atomically (a reader sees the old file or the new one). Call it
      once per table at the end of a run (a conftest's `pytest_terminal_summary`); it is
      not safe against two processes recording into one file at the same moment.
    """
    rows = [list(row) for row in rows]
    if not rows:
        return path
    table = markdown_table(header, rows)
    section = f"## {name}\n\n{_provenance()}\n\n{table}\n"
    sections = _sections(path.read_text() if path.exists() else "")
    sections[name] = section
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text("\n".join([PREAMBLE, *sections.values()]))
    partial.replace(path)
    if terminal is not None:
        terminal.write_sep("=", name)
        terminal.write_line(table)
        terminal.write_line(f"recorded in {path}")
    return path


def _line(cells: Sequence[object]) -> str:
    texts = [str(cell) for cell in cells]
    if any("\n" in text for text in texts):
        raise ValueError(f"a line break in a cell: {cells!r}")
    return "| " + " | ".join(text.replace("|", "\\|") for text in texts) + " |"


def _sections(text: str) -> dict[str, str]:
    """The file's tables by title, in order, each from its heading to the next one's."""
    starts = [match.start() for match in HEADING.finditer(text)]
    parts = (text[start:end] for start, end in pairwise([*starts, len(text)]))
    return {part.partition("\n")[0][3:]: part.rstrip() + "\n" for part in parts}


def _provenance() -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = shlex.join(["pytest", *sys.argv[1:]])
    load = os.getloadavg()[0]
    return (
        f"Measured {when}{_commit()} by `{command}`;"
        f" {os.cpu_count()} CPUs, load average {load:.1f} at the end."
    )


def _commit() -> str:
    """' at <commit>' (noting uncommitted changes), or '' outside a git checkout."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return ""
    changed = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    ).stdout.strip()
    return f" at {head.stdout.strip()}" + (" with uncommitted changes" if changed else "")
