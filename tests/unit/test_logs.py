"""JSON log lines on a real file descriptor: batched, yet in order and never stuck."""

from __future__ import annotations

import ast
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service import logs
from service.counter import RedisUnavailable
from service.settings import Settings
from tests.serving import json_logs, log_records, serving
from tests.support import ROOT, wait_until
from tests.unit.fakes import FakeCounter


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "stdout.log"
    with path.open("w") as stream:
        logs.configure(Settings(replica_id="r1", log_format="json"), stream)
        yield path
        logs.configure(Settings(log_format="console"))  # stops the flusher of this file


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_info_line_is_written_within_the_flush_interval(log_file: Path) -> None:
    logs.get_logger().info("request", status=200)
    [record] = wait_until(lambda: records(log_file), 5 * logs.FLUSH_INTERVAL, "the info line")
    assert record["event"] == "request"
    assert record["replica"] == "r1"
    assert record["level"] == "info"


def test_a_warning_flushes_the_lines_before_it_in_order(log_file: Path) -> None:
    log = logs.get_logger()
    for n in range(3):
        log.info("request", n=n)
    log.warning("redis_unavailable")
    # No wait: the warning wrote itself and everything queued ahead of it.
    assert [r["event"] for r in records(log_file)] == ["request"] * 3 + ["redis_unavailable"]


def test_stdlib_lines_share_the_stream_and_the_order(log_file: Path) -> None:
    logs.get_logger().info("request")
    logging.getLogger("hypercorn.error").error("worker failed")
    assert [(r["event"], r["level"]) for r in records(log_file)] == [
        ("request", "info"),
        ("worker failed", "error"),
    ]


def test_timestamps_are_iso_utc_with_microseconds_and_move_with_the_clock(
    log_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Within a second, across a second, and a fraction that float arithmetic rounds down.
    times = (1_795_000_000.5, 1_795_000_000.999999, 1_795_000_061.000001)
    for now in times:
        monkeypatch.setattr(time, "time", lambda now=now: now)
        logs.get_logger().warning("tick")
    stamps = [r["timestamp"] for r in records(log_file)]
    assert stamps == [
        "2026-11-18T11:06:40.500000Z",
        "2026-11-18T11:06:40.999999Z",
        "2026-11-18T11:07:41.000001Z",
    ]
    assert stamps == [
        datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z") for t in times
    ]


@pytest.mark.parametrize("run", ["first", "second"])
async def test_each_tests_log_lines_go_to_its_own_stream(run: str) -> None:
    """The same app code logging in two tests, each with its own stream: no logger cached
    by the first keeps writing into the first stream (structlog caches on first use)."""
    fake = FakeCounter()
    fake.failure = RedisUnavailable("TimeoutError")
    with json_logs(run) as stream:
        async with serving(Settings(replica_id=run), fake) as client:
            assert (await client.get("/count")).status_code == 503
        [line] = log_records(stream, "redis_unavailable")
    assert line["replica"] == run


def test_no_module_of_the_service_binds_a_logger_at_import() -> None:
    """A logger made at import is cached with the configuration of its first use and
    ignores every later `logs.configure` (the test above shows what that breaks)."""
    for path in sorted((ROOT / "service").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                calls = [n for n in ast.walk(node.value) if isinstance(n, ast.Call)]
                names = {ast.unparse(call.func) for call in calls}
                assert not names & {"get_logger", "logs.get_logger", "structlog.get_logger"}, (
                    f"{path.name}:{node.lineno} binds a logger at import"
                )
