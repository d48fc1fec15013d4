"""`make test`: every tier, in two pytest processes at once.

The Swarm tiers (a single-node swarm on this machine's engine, and three Docker hosts of
their own) spend most of their time waiting: on Swarm to converge, on Sentinels to agree,
on managers to see a host again. They run beside the other tiers, so a full run takes
about the longer of the two rather than their sum. The others print as they go; the
Swarm tiers' output goes to a log, printed whole when both are done. The run ends with
each side's failures and summary line, and fails when either side failed.

    python -m tests.tiers TIER... -- SWARM_TIER...
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence

# pytest's last line ("== 3 failed, 700 passed in 1800.00s (0:30:00) ==") and its short
# summary's lines ("FAILED tests/...", "ERROR tests/...").
SUMMARY = re.compile(r"^=+ .* in [\d.]+s.* =+$")
FAILURE = re.compile(r"^(FAILED|ERROR) ")


def pytest(tiers: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", *tiers]


def outcome(name: str, lines: Sequence[str], code: int) -> list[str]:
    """One side's failures and its summary line (or its exit code, when pytest gave none)."""
    failures = [line for line in lines if FAILURE.match(line)]
    summary = next((line for line in reversed(lines) if SUMMARY.match(line)), None)
    return [f"{name}: {summary.strip('= ') if summary else f'pytest exited {code}'}", *failures]


def main(argv: Sequence[str]) -> int:
    if "--" not in argv:
        raise SystemExit("usage: python -m tests.tiers TIER... -- SWARM_TIER...")
    split = list(argv).index("--")
    tiers, swarm_tiers = list(argv[:split]), list(argv[split + 1 :])
    with tempfile.NamedTemporaryFile(
        "w+", prefix="tally-swarm-tiers-", suffix=".log", delete=False
    ) as log:
        print(f"{' '.join(swarm_tiers)} run beside the other tiers; their log: {log.name}")
        sys.stdout.flush()
        beside = subprocess.Popen(pytest(swarm_tiers), stdout=log, stderr=subprocess.STDOUT)
        lines: list[str] = []
        try:
            main_side = subprocess.Popen(
                pytest(tiers), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            assert main_side.stdout is not None
            for line in main_side.stdout:
                sys.stdout.write(line)
                lines.append(line.rstrip("\n"))
            code = main_side.wait()
            beside_code = beside.wait()
        except KeyboardInterrupt:  # both got the signal too; let them clean up
            beside.wait()
            raise
        log.seek(0)
        beside_lines = log.read().splitlines()
    print(f"{'=' * 20} {' '.join(swarm_tiers)}, run beside the others {'=' * 20}")
    print("\n".join(beside_lines))
    print(f"{'=' * 20} make test {'=' * 20}")
    print("\n".join(outcome(" ".join(tiers), lines, code)))
    print("\n".join(outcome(" ".join(swarm_tiers), beside_lines, beside_code)))
    return code or beside_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
