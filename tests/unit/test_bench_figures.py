"""The benchmark's readings and arithmetic (bench/run.py, bench/openloop.py): cgroup CPU
files, Redis's INFO, the records step's figures, the capacity model and the ratios."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from bench.openloop import OpenLoopRun, request_bytes
from bench.run import (
    CONNECTIONS,
    Capacity,
    Measured,
    Records,
    RedisMemory,
    WrkRun,
    cgroup_cpu_file,
    cpu_seconds,
    lineup,
    ratio,
    records_report,
    redis_info,
    report,
    usec_per_call,
)

ROOT = Path("/sys/fs/cgroup")
CONTAINER = "4f1c0ffee"


def test_cgroup_v1_cpu_time_is_the_cpuacct_hierarchys_usage() -> None:
    # cgroupfs driver, cpuacct on its own and mounted together with cpu.
    alone = f"3:cpuset:/docker/{CONTAINER}\n2:cpuacct:/docker/{CONTAINER}\n0::/\n"
    together = f"4:cpu,cpuacct:/system.slice/docker-{CONTAINER}.scope\n1:name=systemd:/x\n"
    assert cgroup_cpu_file(alone, ROOT) == ROOT / f"cpuacct/docker/{CONTAINER}/cpuacct.usage"
    assert cgroup_cpu_file(together, ROOT) == (
        ROOT / f"cpuacct/system.slice/docker-{CONTAINER}.scope/cpuacct.usage"
    )


def test_cgroup_v2_cpu_time_is_the_unified_hierarchys_cpu_stat(tmp_path: Path) -> None:
    line = f"0::/system.slice/docker-{CONTAINER}.scope\n"
    assert cgroup_cpu_file(line, tmp_path) == (
        tmp_path / f"system.slice/docker-{CONTAINER}.scope/cpu.stat"
    )
    (tmp_path / "unified").mkdir()  # a hybrid host mounts v2 beside the v1 hierarchies
    assert cgroup_cpu_file(line, tmp_path) == (
        tmp_path / f"unified/system.slice/docker-{CONTAINER}.scope/cpu.stat"
    )
    assert cgroup_cpu_file("5:memory:/docker/x\n", tmp_path) is None


def test_cpu_time_in_seconds_from_either_file() -> None:
    assert cpu_seconds("2500000000\n") == 2.5
    assert cpu_seconds("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n") == 1.5


INFO = """# Memory\r
used_memory:1048576\r
used_memory_human:1.00M\r
maxmemory:268435456\r
maxmemory_policy:volatile-ttl\r
\r
# Stats\r
evicted_keys:7\r
\r
# Commandstats\r
cmdstat_evalsha:calls=200000,usec=1300000,usec_per_call=6.50,rejected_calls=0,failed_calls=0\r
cmdstat_ping:calls=3,usec=1,usec_per_call=0.33,rejected_calls=0,failed_calls=0\r
"""


def test_redis_info_reads_fields_of_every_section() -> None:
    info = redis_info(INFO)
    assert info["used_memory"] == "1048576"
    assert info["maxmemory_policy"] == "volatile-ttl"
    assert "# Memory" not in info
    assert usec_per_call(info, "evalsha") == 6.5
    assert math.isnan(usec_per_call(info, "incr"))  # never called: no line


def test_redis_memory_reads_info_and_dbsize() -> None:
    memory = RedisMemory.parse(INFO, "1200\n")
    assert memory == RedisMemory(used=1048576, keys=1200, evicted=7, maxmemory=268435456)


def memory(used: int, keys: int, evicted: int = 0) -> RedisMemory:
    return RedisMemory(used=used, keys=keys, evicted=evicted, maxmemory=256 * 2**20)


def test_a_hold_longer_than_the_window_measures_the_window() -> None:
    # 1,000 req/s for 600 s; records live 300 s, so 300,000 are alive at the end, 150 B each.
    hold = Records(
        before=memory(2_000_000, 0),
        after=memory(2_000_000 + 300_000 * 150, 300_000),
        peak_used=47_000_000,
        rate=1000.0,
        seconds=600.0,
        errors=0,
    )
    assert hold.bytes_per_record == 150
    assert hold.lifetime == 300
    assert hold.window_reached
    assert hold.memory_per_rps == 45_000  # bytes held per sustained request a second
    assert hold.eviction_rate == pytest.approx((256 * 2**20 - 2_000_000) / 45_000)
    assert hold.evicted == 0
    assert hold.exact


def test_a_hold_that_filled_maxmemory_gives_bounds() -> None:
    # Redis evicted: the records it kept lived less than their window.
    full = RedisMemory(used=256 * 2**20, keys=1_600_000, evicted=1_700_000, maxmemory=256 * 2**20)
    hold = Records(memory(700_000, 0), full, 256 * 2**20, 5600.0, 600.0, 0)
    assert hold.window_reached
    assert not hold.exact
    lines = records_report({"keyed": hold}, "wrk at 128 connections", 600)
    assert "| ≥ 285.7 |" in lines[4]
    assert any("lower bounds" in line for line in lines)


def test_a_hold_shorter_than_the_window_gives_lower_bounds() -> None:
    # 30 s at 100 req/s, nothing expired yet: the lifetime seen is the hold's length.
    hold = Records(memory(0, 0, 3), memory(3000 * 160, 3000, 5), 480_000, 100.0, 30.0, 2)
    assert hold.lifetime == 30
    assert not hold.window_reached
    assert hold.evicted == 2


def test_a_hold_that_made_no_record_has_no_bytes_per_record() -> None:
    hold = Records(memory(100, 1), memory(100, 1), 100, 0.0, 30.0, 30)
    assert math.isnan(hold.bytes_per_record)
    assert math.isnan(hold.lifetime)


def test_no_maxmemory_never_evicts() -> None:
    unlimited = RedisMemory(used=1000, keys=10, evicted=0, maxmemory=0)
    hold = Records(memory(0, 0), unlimited, 1000, 10.0, 600.0, 0)
    assert hold.eviction_rate == math.inf


def test_capacity_model() -> None:
    # 400 µs of app-side CPU a request, 20 µs of Redis's: a Redis core serves 50,000 req/s,
    # a 4-core app host 10,000, so one primary serves 5 such hosts.
    model = Capacity(app_us=400.0, redis_us=20.0, host_cores=4)
    assert model.redis_ceiling == 50_000
    assert model.host_rate == 10_000
    assert model.hosts == 5


def test_ratios_to_two_places_and_none_of_nothing() -> None:
    assert ratio(2346.0, 2129.0) == "1.10"
    assert ratio(2346.0, 4602.0) == "0.51"
    assert ratio(5.0, 0.0) == "n/a"
    assert ratio(5.0, math.nan) == "n/a"


def test_the_open_loop_sends_a_plain_get() -> None:
    plain = request_bytes("nginx", "/count")
    assert plain == b"GET /count HTTP/1.1\r\nHost: nginx\r\nAccept: application/json\r\n\r\n"


def measured(rps: float, p99: float, cpu: dict[str, float], rss: float = 60.0) -> Measured:
    closed = {c: [WrkRun(int(rps * 10), rps, 0.005, p99, 0)] for c in CONNECTIONS}
    fixed = [OpenLoopRun(rate=1000.0, sent=10, latencies=[0.001] * 9 + [p99])]
    return Measured(closed, fixed, "ok (+0)", [rss] * 3, {c: cpu for c in CONNECTIONS}, 6.5)


def test_the_report_prints_the_ratios_targets_and_capacity_model() -> None:
    variants = lineup()
    cpu = {"app": 300.0, "nginx": 100.0, "redis": 20.0}
    results = {variant: measured(2000.0, 0.030, cpu) for variant in variants}
    results[variants.tally] = measured(2600.0, 0.020, cpu, rss=82.0)
    results[variants.fastapi] = measured(4000.0, 0.010, {"app": 100.0})  # no cgroup for two
    text = report(variants, results)
    for connections in CONNECTIONS:
        assert (
            f"- at {connections} connections: tally / Flask 1.30, tally / FastAPI 0.65,"
            " tally / tally-on-uvicorn 1.30," in text
        )
        assert (
            "tally-ha / tally 0.77, tally-with-hiredis / tally 0.77,"
            " tally / tally-uncoalesced 1.30\n" in text
        )
    assert "| tally / Flask >= 1.25 at 32 and 128 connections | met: 1.30 and 1.30 |" in text
    assert "| tally / FastAPI >= 0.65 at 32 and 128 connections | met: 0.65 and 0.65 |" in text
    assert "| tally's p99 at the fixed load <= Flask's | met: 20.0 ms against 30.0 ms |" in text
    assert (
        "| RSS per replica of tally <= 80 MiB, after the runs | **missed**: 82, 82, 82 MiB |"
        in text
    )
    assert f"| {variants.fastapi.name} | 32 | 100 | n/a | n/a | n/a |" in text
    assert f"| {variants.tally.name} | 128 | 300 | 100 | 20 | 420 |" in text
    # 400 µs app-side, 20 µs Redis: 50,000 req/s a primary, 2,500 a core of app host.
    assert "one Redis primary: 50,000 req/s" in text
    assert f"app hosts per Redis primary: {50_000 / (2_500 * (os.cpu_count() or 1)):.1f}" in text


def test_a_missed_target_gives_what_the_run_measured_of_its_reason() -> None:
    variants = lineup()
    results = {v: measured(2000.0, 0.030, {"app": 800.0, "nginx": 100.0}) for v in variants}
    results[variants.uvicorn] = measured(3000.0, 0.030, {"app": 450.0, "nginx": 100.0})
    results[variants.tally] = measured(2000.0, 0.040, {"app": 800.0, "nginx": 100.0})
    results[variants.tally_noprobes] = measured(2000.0, 0.009, {})
    results[variants.flask_noprobes] = measured(2000.0, 0.004, {})
    text = report(variants, results)
    assert (
        "| tally / Flask >= 1.25 at 32 and 128 connections | **missed**: 1.00 and 1.00"
        " | the server: tally's own image on uvicorn / Flask 1.50 and 1.50; the replicas'"
        " CPU per request 800 µs and 800 µs on Hypercorn, 450 µs and 450 µs on uvicorn |"
    ) in text
    assert (
        "| tally's p99 at the fixed load <= Flask's | **missed**: 40.0 ms against 30.0 ms"
        " | without health probes (the controls): tally 9.0 ms, Flask 4.0 ms |"
    ) in text
