"""`make test`'s two sides: both run, both are reported, and either one failing fails it."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pytest

from tests import tiers

PASSED = "=== 3 passed in 1.00s ==="
FAILED = "=== 1 failed, 2 passed in 2.00s (0:00:02) ==="


def fake_pytest(outputs: dict[str, tuple[str, int]]) -> object:
    """tiers.pytest as a command that prints a tier's canned output and exits with its code."""

    def command(chosen: Sequence[str]) -> list[str]:
        text, code = outputs[" ".join(chosen)]
        return [sys.executable, "-c", f"print({text!r}); raise SystemExit({code})"]

    return command


def test_the_outcome_is_the_failures_and_the_summary_line() -> None:
    lines = ["....F", "FAILED tests/x.py::test_y - AssertionError: 1", "ERROR tests/z.py", FAILED]
    assert tiers.outcome("tests/x", lines, 1) == [
        "tests/x: 1 failed, 2 passed in 2.00s (0:00:02)",
        "FAILED tests/x.py::test_y - AssertionError: 1",
        "ERROR tests/z.py",
    ]
    assert tiers.outcome("tests/x", ["Killed"], -9) == ["tests/x: pytest exited -9"]


@pytest.mark.parametrize(("main_code", "beside_code"), [(0, 0), (0, 1), (1, 0)])
def test_both_sides_run_are_reported_and_either_failing_fails_the_run(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    main_code: int,
    beside_code: int,
) -> None:
    outputs = {
        "tests/a tests/b": (f"FAILED tests/a\n{FAILED}" if main_code else PASSED, main_code),
        "tests/swarm": (f"FAILED tests/swarm\n{FAILED}" if beside_code else PASSED, beside_code),
    }
    monkeypatch.setattr(tiers, "pytest", fake_pytest(outputs))
    code = tiers.main(["tests/a", "tests/b", "--", "tests/swarm"])
    out = capsys.readouterr().out.splitlines()
    assert code == (main_code or beside_code)
    ending = out[out.index("==================== make test ====================") + 1 :]
    assert ending[0].startswith("tests/a tests/b: ")
    assert ("FAILED tests/a" in ending) == bool(main_code)
    assert ("FAILED tests/swarm" in ending) == bool(beside_code)
    assert any(line.startswith("tests/swarm: ") for line in ending)


def test_without_the_separator_it_says_how_to_call_it() -> None:
    with pytest.raises(SystemExit, match="usage"):
        tiers.main(["tests/a"])
