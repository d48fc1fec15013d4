"""ops/backup/backup.py without Redis: the RDB reader, the SYNC payload, the folder's upkeep.
(The stack tier takes real snapshots and restores them: tests/stack/test_backup.py.)"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import pytest

from ops.backup import backup
from ops.backup.backup import BackupError, Config, ConfigError, SnapshotError, crc64


def string(value: bytes) -> bytes:
    assert len(value) < 64
    return bytes([len(value)]) + value


def rdb(*records: bytes, checksum: bool = True) -> bytes:
    """An RDB as Redis 8 writes one: header, aux fields, db 0, the records, EOF, CRC64."""
    body = b"REDIS0012" + b"\xfa" + string(b"redis-ver") + string(b"8.0.6")
    body += b"\xfe\x00" + b"\xfb\x02\x01" + b"".join(records) + b"\xff"
    return body + struct.pack("<Q", crc64(body) if checksum else 0)


COUNTER = b"\x00" + string(b"visitor_count") + b"\xc2" + struct.pack("<i", 1042)
# An idempotency record with its expiry, its key LZF-compressed ("abc" and a back-reference).
RECORD = (
    b"\xfc" + struct.pack("<Q", 1_800_000_000_000) + b"\x00"
    + b"\xc3\x06\x09" + b"\x02abc\x80\x02" + b"\xc0\x07"
)  # fmt: skip


def read(data: bytes) -> backup.Snapshot:
    return backup.read_snapshot(io.BufferedReader(io.BytesIO(data)), "visitor_count")


def test_crc64_is_redis_s_check_value() -> None:
    assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA


def test_lzf_back_references_expand() -> None:
    assert backup.lzf_decompress(b"\x02abc\x80\x02", 9) == b"abcabcabc"


def test_a_snapshot_reads_through_to_its_count() -> None:
    snapshot = read(rdb(RECORD, COUNTER))
    assert (snapshot.count, snapshot.keys) == (1042, 2)
    assert (snapshot.rdb_version, snapshot.redis_version) == (12, "8.0.6")


def test_a_snapshot_without_the_counter_has_no_count() -> None:
    assert read(rdb(RECORD)).count is None


def test_a_snapshot_written_without_checksum_is_read_without_one() -> None:
    assert read(rdb(COUNTER, checksum=False)).count == 1042


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda data: data[: len(data) // 2], "truncated"),
        (lambda data: data[:30] + bytes([data[30] ^ 0x01]) + data[31:], "corrupt"),
        (lambda data: b"not a snapshot at all\n", "no REDIS header"),
        (lambda data: b"", "no REDIS header"),
        (lambda data: data + b"x", "bytes after"),
    ],
    ids=["truncated", "a byte flipped", "not an RDB", "empty", "trailing bytes"],
)
def test_a_spoiled_snapshot_is_refused_saying_why(
    spoil: Callable[[bytes], bytes], reason: str
) -> None:
    with pytest.raises(SnapshotError, match=reason):
        read(spoil(rdb(RECORD, COUNTER)))


def test_a_value_of_another_type_is_refused() -> None:
    with pytest.raises(SnapshotError, match="type 2"):
        read(rdb(b"\x02" + string(b"a-set") + b"\x01" + string(b"m")))


def payload(answer: bytes) -> bytes:
    out = io.BytesIO()
    backup._copy_payload(io.BufferedReader(io.BytesIO(answer)), out)
    return out.getvalue()


def test_sync_payloads_are_copied_whole_from_disk_and_diskless_syncs() -> None:
    mark = b"m" * 40
    assert payload(b"\n\n$5\r\nhello") == b"hello"
    assert payload(b"\n$EOF:" + mark + b"\r\n" + b"snap" * 100_000 + mark) == b"snap" * 100_000


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"-NOPERM no permissions\r\n", "SYNC refused: NOPERM"),
        (b"$10\r\nhello", "5 bytes short"),
        (b"$EOF:" + b"m" * 40 + b"\r\nhal", "before its end mark"),
        (b"\n\n", "closed the connection"),
    ],
)
def test_a_sync_that_fails_says_why(answer: bytes, reason: str) -> None:
    with pytest.raises(BackupError, match=reason):
        payload(answer)


@pytest.mark.parametrize("raw", ["90s", "30m", "6h", "1d", "45"])
def test_intervals_read_as_seconds(raw: str) -> None:
    assert backup.duration("BACKUP_INTERVAL", raw) in (90, 1800, 21600, 86400, 45)


@pytest.mark.parametrize("raw", ["", "0", "often", "-5m", "1.5h", "6 hours"])
def test_a_bad_interval_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match=f"^BACKUP_INTERVAL must be a duration .*got {raw!r}$"):
        backup.duration("BACKUP_INTERVAL", raw)


def config(folder: Path, keep: int = 2) -> Config:
    return Config("redis", 6379, "backup", folder / "pw", folder, 60.0, keep, "visitor_count")


def test_backups_are_taken_checked_named_by_time_and_pruned_to_keep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = rdb(RECORD, COUNTER)

    def fetch(_config: Config, _password: str, out: BinaryIO) -> None:
        out.write(data)

    monkeypatch.setattr(backup, "fetch", fetch)
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for minute in range(4):
        at = start + timedelta(minutes=minute)
        taken = backup.take(config(tmp_path), "pw", lambda: at)  # noqa: B023 (called at once)
        backup.prune(tmp_path, 2)
    assert taken.file == "tally-20260102T030705Z.rdb"
    assert [path.name for path in backup.backups(tmp_path)] == [
        "tally-20260102T030605Z.rdb", "tally-20260102T030705Z.rdb",
    ]  # fmt: skip
    manifest = json.loads((tmp_path / "tally-20260102T030705Z.json").read_text())
    assert manifest["count"] == 1042
    assert manifest["bytes"] == len(data)
    assert backup.last_success(tmp_path) == (start + timedelta(minutes=3)).timestamp()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "tally-20260102T030605Z.json", "tally-20260102T030605Z.rdb",
        "tally-20260102T030705Z.json", "tally-20260102T030705Z.rdb",
    ]  # fmt: skip


def test_a_snapshot_that_does_not_read_through_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fetch(_config: Config, _password: str, out: BinaryIO) -> None:
        out.write(rdb(COUNTER)[:-3])

    monkeypatch.setattr(backup, "fetch", fetch)
    with pytest.raises(SnapshotError, match="truncated"):
        backup.take(config(tmp_path), "pw", lambda: datetime(2026, 1, 2, tzinfo=UTC))
    assert list(tmp_path.iterdir()) == []
    assert backup.last_success(tmp_path) == 0.0
