"""record_table keeps the reliability results file one table per name, each from its last run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.results import PREAMBLE, markdown_table, record_table

HEADER = ["fault", "requests", "lost"]


def tables(path: Path) -> dict[str, list[str]]:
    """Each table's title and its rows' lines, as a reader of the file finds them."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            title = line[3:]
            found[title] = []
        elif line.startswith("|"):
            found[title].append(line)
    return {title: lines[2:] for title, lines in found.items()}  # after the header and rule


def test_a_table_is_written_under_the_preamble_with_how_it_was_measured(tmp_path: Path) -> None:
    path = record_table("Faults", HEADER, [["replica killed", 3213, 0]], tmp_path / "r.md")
    text = path.read_text()
    assert text.startswith(PREAMBLE)
    [measured] = [line for line in text.splitlines() if line.startswith("Measured ")]
    assert "by `pytest" in measured
    assert "CPUs, load average" in measured
    assert tables(path) == {"Faults": ["| replica killed | 3213 | 0 |"]}


def test_a_second_run_replaces_its_own_table_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "r.md"
    record_table("Faults", HEADER, [["replica killed", 1, 0], ["redis paused", 2, 0]], path)
    record_table("Failover", HEADER, [["primary killed", 3, 0]], path)
    record_table("Faults", HEADER, [["nginx reload", 4, 0]], path)
    assert tables(path) == {
        "Faults": ["| nginx reload | 4 | 0 |"],
        "Failover": ["| primary killed | 3 | 0 |"],
    }
    assert path.read_text().count(PREAMBLE) == 1


def test_no_rows_leave_the_file_as_it_was(tmp_path: Path) -> None:
    path = record_table("Faults", HEADER, [["replica killed", 1, 0]], tmp_path / "r.md")
    before = path.read_text()
    record_table("Faults", HEADER, [], path)
    assert path.read_text() == before


def test_a_pipe_in_a_cell_is_escaped() -> None:
    assert markdown_table(["a"], [["x | y"]]).splitlines()[2] == "| x \\| y |"


@pytest.mark.parametrize("row", [["only one"], ["a", 1, 2, 3], ["two\nlines", 1, 0]])
def test_a_malformed_row_is_refused_before_the_file_is_touched(
    tmp_path: Path, row: list[object]
) -> None:
    path = tmp_path / "r.md"
    with pytest.raises(ValueError, match=r"cells|line break"):
        record_table("Faults", HEADER, [row], path)
    assert not path.exists()


class Terminal:
    """What pytest's terminal reporter offers a conftest: a separator line and a line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_sep(self, sep: str, title: str) -> None:
        self.lines.append(f"{sep * 3} {title} {sep * 3}")

    def write_line(self, line: str) -> None:
        self.lines.extend(line.splitlines())


def test_with_a_terminal_the_table_is_printed_under_its_name(tmp_path: Path) -> None:
    terminal = Terminal()
    path = record_table("Faults", HEADER, [["replica killed", 1, 0]], tmp_path / "r.md", terminal)
    assert terminal.lines == [
        "=== Faults ===",
        "| fault | requests | lost |",
        "| --- | --- | --- |",
        "| replica killed | 1 | 0 |",
        f"recorded in {path}",
    ]
