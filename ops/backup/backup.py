"""Takes a checked snapshot of Redis with its manifest: `make backup` and the `backup` service.

`python backup.py once` takes one; `python backup.py schedule` takes one every
BACKUP_INTERVAL, keeps the last BACKUP_KEEP and serves its metrics for Prometheus. A
snapshot comes over the wire the way `redis-cli --rdb` fetches it (REPLCONF rdb-only,
SYNC): the server forks and streams a point-in-time RDB while it keeps serving. Before a
backup counts, its file is read through (the RDB's structure and its CRC64) and the
counter's value is taken from it, so the manifest says what the file holds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

# The app image's own user: the folder's owner when nobody else owns it.
APP_UID = 10001
# The manifest beside each snapshot names it; a snapshot without one is not a backup.
NAME = re.compile(r"^tally-\d{8}T\d{6}Z\.rdb$")
DURATION = re.compile(r"^([1-9][0-9]*)([smhd]?)$")
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
METRICS_PORT = 9102
EX_CONFIG = 78


class ConfigError(Exception):
    """A setting is invalid; the message names it."""


class BackupError(Exception):
    """The snapshot could not be taken or is not a good one; the message says why."""


class SnapshotError(BackupError):
    """The file is not a whole, loadable Redis snapshot."""


@dataclass(frozen=True)
class Config:
    redis_host: str
    redis_port: int
    username: str
    password_file: Path
    directory: Path
    interval: float
    keep: int
    counter_key: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        return cls(
            redis_host=env.get("REDIS_HOST") or "redis",
            redis_port=_whole("REDIS_PORT", env.get("REDIS_PORT") or "6379", 1),
            username=env.get("REDIS_USERNAME") or "backup",
            password_file=Path(
                env.get("REDIS_PASSWORD_FILE") or "/run/secrets/redis_backup_password"
            ),
            directory=Path(env.get("BACKUP_TARGET") or "/backups"),
            # Their defaults are compose's (ops/configuration.py declares them).
            interval=duration("BACKUP_INTERVAL", env.get("BACKUP_INTERVAL", "")),
            keep=_whole("BACKUP_KEEP", env.get("BACKUP_KEEP", ""), 1),
            counter_key=counter_key(env),
        )


def duration(variable: str, raw: str) -> float:
    """'90s', '30m', '6h', '1d' or plain seconds, as seconds."""
    match = DURATION.fullmatch(raw.strip())
    if not match:
        raise ConfigError(f"{variable} must be a duration such as 90s, 30m, 6h or 1d, got {raw!r}")
    return float(int(match.group(1)) * UNIT_SECONDS[match.group(2)])


def _whole(variable: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"{variable} must be a whole number >= {minimum}, got {raw!r}")
    return value


def counter_key(env: Mapping[str, str]) -> str:
    """The app's COUNTER_KEY, read and checked by the app's own declaration."""
    from service.settings import ConfigError as AppConfigError
    from service.settings import Settings

    try:
        return Settings.from_env({"COUNTER_KEY": env.get("COUNTER_KEY", "")}).counter_key
    except AppConfigError as error:
        raise ConfigError(str(error)) from error


# --- over the wire ------------------------------------------------------------------------


def _command(*parts: str) -> bytes:
    encoded = [part.encode() for part in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(
        b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded
    )


def _expect_ok(stream: BinaryIO, what: str) -> None:
    line = stream.readline().rstrip(b"\r\n")
    if line != b"+OK":
        raise BackupError(f"{what} refused: {line.decode(errors='replace')}")


def fetch(config: Config, password: str, out: BinaryIO, timeout: float = 60.0) -> None:
    """Stream a point-in-time RDB from Redis into `out`, as a replica's first sync gets it."""
    address = f"{config.redis_host}:{config.redis_port}"
    try:
        sock = socket.create_connection((config.redis_host, config.redis_port), timeout)
    except OSError as error:
        raise BackupError(f"Redis at {address} does not answer: {error}") from error
    with sock, sock.makefile("rb") as stream:
        sock.settimeout(timeout)
        try:
            sock.sendall(_command("AUTH", config.username, password))
            _expect_ok(stream, f"AUTH as {config.username}")
            # Only the snapshot: no stream of writes after it, and not counted as a replica.
            sock.sendall(_command("REPLCONF", "rdb-only", "1"))
            _expect_ok(stream, "REPLCONF rdb-only")
            sock.sendall(_command("SYNC"))
            _copy_payload(stream, out)
        except OSError as error:
            raise BackupError(f"the snapshot from {address} broke off: {error}") from error


def _copy_payload(stream: BinaryIO, out: BinaryIO) -> None:
    line = b"\n"
    # While the server forks and starts, it sends bare newlines to keep the link alive.
    while line in (b"\n", b"\r\n"):
        line = stream.readline()
        if not line:
            raise BackupError("Redis closed the connection before sending a snapshot")
    header = line.rstrip(b"\r\n")
    if header.startswith(b"-"):
        raise BackupError(f"SYNC refused: {header[1:].decode(errors='replace')}")
    if header.startswith(b"$EOF:"):
        _copy_until_mark(stream, out, header[5:])
    elif header.startswith(b"$") and header[1:].isdigit():
        _copy_exactly(stream, out, int(header[1:]))
    else:
        raise BackupError(f"unexpected answer to SYNC: {header[:40]!r}")


def _copy_exactly(stream: BinaryIO, out: BinaryIO, size: int) -> None:
    left = size
    while left:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            raise BackupError(f"the snapshot ended {left} bytes short of {size}")
        out.write(chunk)
        left -= len(chunk)


def _copy_until_mark(stream: BinaryIO, out: BinaryIO, mark: bytes) -> None:
    """A diskless sync ends with the 40-byte mark its header announced."""
    held = b""
    while True:
        chunk = stream.read1(1 << 20) if hasattr(stream, "read1") else stream.read(1 << 16)
        if not chunk:
            raise BackupError("the snapshot ended before its end mark")
        held += chunk
        if held.endswith(mark):
            out.write(held[: -len(mark)])
            return
        out.write(held[: -len(mark)])
        held = held[-len(mark) :]


# --- reading an RDB -----------------------------------------------------------------------


def _crc64_table() -> list[int]:
    # Redis's CRC-64 (Jones polynomial, reflected), as rdb.c checks it at load.
    poly = 0x95AC9329AC4BC9B5
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC64_TABLE = _crc64_table()


def crc64(data: bytes, crc: int = 0) -> int:
    table = CRC64_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


class _Reader:
    """Reads an RDB file front to back, keeping the CRC64 of what it has read."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.crc = 0

    def take(self, size: int) -> bytes:
        data = self._stream.read(size)
        if len(data) != size:
            raise SnapshotError("the file ends in the middle of the snapshot (truncated)")
        self.crc = crc64(data, self.crc)
        return data

    def byte(self) -> int:
        return self.take(1)[0]

    def length(self) -> tuple[int, bool]:
        """A length, or (encoding, True) for a specially encoded string."""
        first = self.byte()
        kind = first >> 6
        if kind == 0:
            return first & 0x3F, False
        if kind == 1:
            return ((first & 0x3F) << 8) | self.byte(), False
        if first == 0x80:
            return int(struct.unpack(">I", self.take(4))[0]), False
        if first == 0x81:
            return int(struct.unpack(">Q", self.take(8))[0]), False
        if kind == 3:
            return first & 0x3F, True
        raise SnapshotError(f"bad length encoding 0x{first:02x}")

    def plain_length(self) -> int:
        value, encoded = self.length()
        if encoded:
            raise SnapshotError("an encoded string where a length belongs")
        return value

    def string(self) -> bytes:
        value, encoded = self.length()
        if not encoded:
            return self.take(value)
        if value in (0, 1, 2):  # an integer in 1, 2 or 4 bytes, little-endian
            size = 1 << value
            number = int.from_bytes(self.take(size), "little", signed=True)
            return str(number).encode()
        if value == 3:
            compressed, size = self.plain_length(), self.plain_length()
            return lzf_decompress(self.take(compressed), size)
        raise SnapshotError(f"unknown string encoding {value}")


def lzf_decompress(data: bytes, size: int) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        control = data[i]
        i += 1
        if control < 32:  # a literal run of control + 1 bytes
            out += data[i : i + control + 1]
            i += control + 1
            continue
        length = control >> 5
        if length == 7:
            length += data[i]
            i += 1
        start = len(out) - ((control & 0x1F) << 8) - data[i] - 1
        i += 1
        if start < 0:
            raise SnapshotError("corrupt compressed string")
        for k in range(length + 2):  # may overlap what it copies: byte by byte
            out.append(out[start + k])
    if len(out) != size:
        raise SnapshotError("corrupt compressed string")
    return bytes(out)


@dataclass(frozen=True)
class Snapshot:
    rdb_version: int
    redis_version: str
    keys: int
    count: int | None  # the counter's value; None when the snapshot has no counter


# RDB opcodes (redis/src/rdb.h) this reader meets in tally's data.
_SLOT_INFO, _FUNCTION2, _MODULE_AUX, _IDLE, _FREQ = 0xF4, 0xF5, 0xF7, 0xF8, 0xF9
_AUX, _RESIZEDB, _EXPIRE_MS, _EXPIRE, _SELECTDB, _EOF = 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF
_STRING = 0


def read_snapshot(stream: BinaryIO, key: str) -> Snapshot:
    """Walk an RDB to its end and check its CRC64; tally stores only strings."""
    reader = _Reader(stream)
    magic = stream.read(9)
    if magic[:5] != b"REDIS" or not magic[5:].isdigit():
        raise SnapshotError("not a Redis snapshot (no REDIS header)")
    reader.crc = crc64(magic)
    aux: dict[bytes, bytes] = {}
    keys, count, db = 0, None, 0
    while True:
        opcode = reader.byte()
        if opcode == _EOF:
            break
        if opcode == _AUX:
            name = reader.string()
            aux[name] = reader.string()
        elif opcode == _SELECTDB:
            db = reader.plain_length()
        elif opcode == _RESIZEDB:
            reader.plain_length(), reader.plain_length()
        elif opcode == _EXPIRE_MS:
            reader.take(8)
        elif opcode == _EXPIRE:
            reader.take(4)
        elif opcode == _IDLE:
            reader.plain_length()
        elif opcode == _FREQ:
            reader.take(1)
        elif opcode == _SLOT_INFO:
            reader.plain_length(), reader.plain_length(), reader.plain_length()
        elif opcode == _FUNCTION2:
            reader.string()
        elif opcode == _STRING:
            name, value = reader.string(), reader.string()
            keys += 1
            if db == 0 and name == key.encode():
                count = _integer(value, key)
        elif opcode == _MODULE_AUX:
            raise SnapshotError("a module's data, which tally's Redis never holds")
        else:
            raise SnapshotError(f"a value of type {opcode}, which tally's Redis never holds")
    computed = reader.crc
    stored = int.from_bytes(reader.take(8), "little") if int(magic[5:]) >= 5 else 0
    if stored and stored != computed:
        raise SnapshotError("its CRC64 does not match its content (corrupt)")
    if stream.read(1):
        raise SnapshotError("bytes after the snapshot's end")
    version = aux.get(b"redis-ver", b"unknown").decode(errors="replace")
    return Snapshot(int(magic[5:]), version, keys, count)


def _integer(value: bytes, key: str) -> int:
    try:
        return int(value)
    except ValueError as error:
        raise SnapshotError(f"the counter {key!r} is not a number") from error


def check_file(path: Path, key: str) -> Snapshot:
    with path.open("rb") as raw, io.BufferedReader(raw, 1 << 20) as stream:
        return read_snapshot(stream, key)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- backups in the folder ----------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    file: str
    sha256: str
    bytes: int
    count: int | None
    counter_key: str
    taken_at: str
    redis_version: str
    rdb_version: int
    source: str

    @classmethod
    def read(cls, path: Path) -> Manifest:
        return cls(**json.loads(path.read_text()))


def manifest_path(snapshot: Path) -> Path:
    return snapshot.with_suffix(".json")


def backups(directory: Path) -> list[Path]:
    """The folder's complete backups (a snapshot with its manifest), oldest first."""
    return sorted(
        path
        for path in directory.glob("tally-*.rdb")
        if NAME.fullmatch(path.name) and manifest_path(path).exists()
    )


def take(config: Config, password: str, now: Callable[[], datetime]) -> Manifest:
    """One backup: fetched, read through, then moved into place with its manifest last."""
    taken = now()
    name = f"tally-{taken:%Y%m%dT%H%M%SZ}.rdb"
    final = config.directory / name
    if final.exists():
        raise BackupError(f"{final} exists already")
    partial = config.directory / f".{name}.partial"
    try:
        with partial.open("wb") as out:
            fetch(config, password, out)
        snapshot = check_file(partial, config.counter_key)
        manifest = Manifest(
            file=name,
            sha256=sha256(partial),
            bytes=partial.stat().st_size,
            count=snapshot.count,
            counter_key=config.counter_key,
            taken_at=taken.isoformat().replace("+00:00", "Z"),
            redis_version=snapshot.redis_version,
            rdb_version=snapshot.rdb_version,
            source=f"{config.redis_host}:{config.redis_port}",
        )
        partial.replace(final)
        written = config.directory / f".{name}.json.partial"
        written.write_text(json.dumps(manifest.__dict__, indent=2) + "\n")
        written.replace(manifest_path(final))
        return manifest
    finally:
        partial.unlink(missing_ok=True)


def prune(directory: Path, keep: int) -> list[Path]:
    """Remove all but the newest `keep` backups; returns what went."""
    gone = backups(directory)[:-keep]
    for path in gone:
        manifest_path(path).unlink()
        path.unlink()
    return gone


def last_success(directory: Path) -> float:
    """When the newest backup in the folder was taken (0: none), so a restart keeps it."""
    found = backups(directory)
    if not found:
        return 0.0
    taken_at = Manifest.read(manifest_path(found[-1])).taken_at.replace("Z", "+00:00")
    return datetime.fromisoformat(taken_at).timestamp()


# --- running ------------------------------------------------------------------------------


def become_owner(directory: Path) -> None:
    """Started as root (to read the password): run as the folder's owner from here on, or
    hand a root-owned folder (one Docker made) to the app image's user. Never as root."""
    if os.getuid() != 0:
        return
    owner = directory.stat()
    uid, gid = owner.st_uid, owner.st_gid
    if uid == 0:
        os.chown(directory, APP_UID, APP_UID)
        uid, gid = APP_UID, APP_UID
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def once(config: Config, password: str) -> None:
    manifest = take(config, password, _utc_now)
    shown = Path(os.environ.get("BACKUP_DIR") or config.directory) / manifest.file
    print(
        f"backup: {shown} ({manifest.bytes} bytes,"
        f" {manifest.counter_key}={manifest.count}, sha256 {manifest.sha256})",
        flush=True,
    )


def schedule(config: Config, password: str, stop: threading.Event) -> None:
    """One backup now and one every interval until stopped; metrics on METRICS_PORT."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

    registry = CollectorRegistry()
    success = Gauge(
        "tally_backup_last_success_timestamp_seconds",
        "When the newest good backup was taken (0: none in the folder)",
        registry=registry,
    )
    interval = Gauge(
        "tally_backup_interval_seconds", "The configured BACKUP_INTERVAL", registry=registry
    )
    size = Gauge("tally_backup_last_size_bytes", "The newest backup's size", registry=registry)
    failures = Counter(
        "tally_backup_failures", "Backups that failed since the service started", registry=registry
    )
    interval.set(config.interval)
    serving = False
    while not stop.is_set():
        try:
            manifest = take(config, password, _utc_now)
            size.set(manifest.bytes)
            pruned = prune(config.directory, config.keep)
            print(
                f"backup: {manifest.file} ({manifest.bytes} bytes, {manifest.counter_key}="
                f"{manifest.count}); {len(pruned)} old one(s) removed, keeping {config.keep}",
                flush=True,
            )
        except (BackupError, OSError) as error:
            failures.inc()
            print(f"backup failed: {error}", file=sys.stderr, flush=True)
        success.set(last_success(config.directory))
        if not serving:
            # Only after the first attempt: a scrape never sees the empty folder of a
            # service that is about to fill it.
            start_http_server(METRICS_PORT, registry=registry)
            serving = True
        stop.wait(config.interval)


def main(argv: list[str], env: Mapping[str, str]) -> int:
    if argv[1:] not in (["once"], ["schedule"]):
        print("usage: backup.py once|schedule", file=sys.stderr)
        return 64
    try:
        config = Config.from_env(env)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EX_CONFIG
    try:
        password = config.password_file.read_text().strip()
        become_owner(config.directory)
    except OSError as error:
        print(f"backup: {error}", file=sys.stderr)
        return EX_CONFIG
    os.umask(0o077)  # a backup holds the data: its owner's alone
    if argv[1] == "once":
        try:
            once(config, password)
        except BackupError as error:
            print(f"backup failed: {error}", file=sys.stderr)
            return 1
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    schedule(config, password, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv, os.environ))
