"""The harness leaves nothing behind: on a signal, and when it finds an earlier run's remains.
(First in the tier: the session's own cluster would be an earlier run's remains to these.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.cluster.hosts import NETNS_DIR, RUN_BASE, RUN_PREFIX, Cluster, leftovers
from tests.support import ROOT, run


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_host_and_its_registry_are_removed_when_the_run_is_interrupted(sig: int) -> None:
    assert leftovers() == []
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.cluster.hosts", "hold", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'loadtest'}"},
    )  # fmt: skip
    assert holder.stdout is not None
    line = holder.stdout.readline()
    assert line.startswith("ready "), line
    assert leftovers(), "the held host shows as a run's remains"
    holder.send_signal(sig)
    assert holder.wait(timeout=120) == 0
    assert leftovers() == []
    mounts = open("/proc/self/mounts").read()  # noqa: SIM115
    assert RUN_PREFIX not in mounts


def test_an_earlier_runs_remains_are_removed_and_the_run_refused() -> None:
    stale = RUN_BASE / f"{RUN_PREFIX}dead00"
    stale.mkdir()
    run("ip", "netns", "add", "tcldead00-n1")
    with pytest.raises(RuntimeError, match="leftovers of an earlier cluster run") as refused:
        Cluster(1).start()
    assert str(stale) in str(refused.value)
    assert str(NETNS_DIR / "tcldead00-n1") in str(refused.value)
    assert leftovers() == []
