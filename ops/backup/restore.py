"""Brings a backup back into the stack's Redis: `make restore BACKUP=backups/tally-<time>.rdb`.

Nothing is touched until the backup has passed every check: its size and sha256 are
the manifest's, it reads through as an RDB with a good CRC64, and a throwaway Redis
(the stack's own image, no network) loads it and finds the manifest's count. Only
then is Redis stopped, its data moved aside (the volume's `replaced-by-restore/`),
the snapshot put in its place as the RDB file and as the append-only file's base (what
Redis loads at start), and Redis started again. Any refusal is one line on stderr.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from ops.backup.backup import (  # noqa: E402
    Manifest,
    SnapshotError,
    check_file,
    manifest_path,
    sha256,
)

REDIS_CONF = ROOT / "ops" / "redis" / "redis.conf"
VERIFY_DEADLINE = 120  # seconds a throwaway Redis may take to load the snapshot

# Runs in a throwaway container of the stack's Redis image, the snapshot on stdin:
# redis-check-rdb reads it through, then a server with no port loads it and answers GET.
VERIFY = r"""
set -u
cat >/tmp/dump.rdb
if ! redis-check-rdb /tmp/dump.rdb >/tmp/check.log 2>&1; then
  echo "redis-check-rdb: $(sed -n '/RDB ERROR DETECTED/{n;p;q;}' /tmp/check.log)"
  exit 3
fi
redis-server --port 0 --unixsocket /tmp/redis.sock --dir /tmp --dbfilename dump.rdb \
  --appendonly no --save '' --logfile /tmp/redis.log &
server=$!
tries=0
until [ "$(redis-cli -s /tmp/redis.sock ping 2>/dev/null)" = PONG ]; do
  if ! kill -0 "$server" 2>/dev/null || [ "$tries" -ge "$2" ]; then
    echo "Redis did not load it: $(tail -n 1 /tmp/redis.log)"
    exit 3
  fi
  tries=$((tries + 1))
  sleep 0.1
done
echo "count=$(redis-cli -s /tmp/redis.sock --raw GET "$1")"
"""

# Runs in a one-off container of the redis service (its volume at /data, Redis stopped).
# With appendonly on, Redis loads the append-only files and never the RDB beside them: the
# snapshot becomes the AOF's base (an RDB base is what Redis itself writes) under a
# manifest naming it alone, and the RDB file too. Redis starts a new increment file.
REPLACE = r"""
set -eu
cd /data
cat >restore.rdb.partial
if [ "$(wc -c <restore.rdb.partial)" != "$1" ]; then
  rm -f restore.rdb.partial
  echo "the copy into the volume is incomplete"
  exit 1
fi
mkdir restore.aof.partial
cp restore.rdb.partial "restore.aof.partial/$4.1.base.rdb"
printf 'file %s.1.base.rdb seq 1 type b\n' "$4" >"restore.aof.partial/$4.manifest"
rm -rf replaced-by-restore
mkdir replaced-by-restore
for old in "$2" "$3"; do
  if [ -e "$old" ]; then mv "$old" replaced-by-restore/; fi
done
mv restore.aof.partial "$3"
mv restore.rdb.partial "$2"
chown -R redis:redis /data
"""

COUNT_NOW = (
    'REDISCLI_AUTH="$(cat /run/secrets/redis_app_password)" '
    'redis-cli --user app --no-auth-warning --raw GET "$1"'
)


class Refused(Exception):
    """The backup failed a check; nothing was touched."""


def compose(*args: str, stdin: Path | None = None) -> subprocess.CompletedProcess[str]:
    with stdin.open("rb") if stdin else open("/dev/null", "rb") as data:
        done = subprocess.run(
            ["docker", "compose", *args], cwd=ROOT, stdin=data, capture_output=True
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def conf_value(name: str) -> str:
    """A setting of ops/redis/redis.conf, the one place the data's file names are written."""
    match = re.search(rf"^{name}\s+\"?([^\"\s]+)\"?\s*$", REDIS_CONF.read_text(), re.MULTILINE)
    if not match:
        raise SystemExit(f"restore: {name} is not set in {REDIS_CONF}")
    return match.group(1)


def locate(given: Path) -> tuple[Path, Manifest]:
    """The snapshot and its manifest, from either one's path."""
    snapshot = given if given.suffix == ".rdb" else given.with_suffix(".rdb")
    if not snapshot.is_file():
        raise Refused(f"{snapshot} does not exist")
    manifest = manifest_path(snapshot)
    try:
        return snapshot, Manifest.read(manifest)
    except (OSError, ValueError, TypeError) as error:
        raise Refused(f"no readable manifest {manifest} beside it ({error})") from error


def check(snapshot: Path, manifest: Manifest, image: str) -> None:
    """Every check, cheapest first; raises Refused with the reason."""
    size = snapshot.stat().st_size
    if size != manifest.bytes:
        raise Refused(f"{snapshot} has {size} bytes, its manifest says {manifest.bytes}")
    digest = sha256(snapshot)
    if digest != manifest.sha256:
        raise Refused(f"checksum mismatch: {snapshot} has sha256 {digest}, its manifest says"
                      f" {manifest.sha256}")  # fmt: skip
    try:
        found = check_file(snapshot, manifest.counter_key).count
    except SnapshotError as error:
        raise Refused(f"{snapshot} is not a loadable Redis snapshot: {error}") from error
    if found != manifest.count:
        raise Refused(f"{snapshot} holds {manifest.counter_key}={found}, its manifest says"
                      f" {manifest.count}")  # fmt: skip
    with snapshot.open("rb") as data:
        loaded = subprocess.run(
            [
                "docker", "run", "--rm", "-i", "--network", "none", "--read-only",
                "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt",
                "no-new-privileges:true", "--user", "redis", "--entrypoint", "sh", image,
                "-c", VERIFY, "verify", manifest.counter_key, str(VERIFY_DEADLINE * 10),
            ],
            stdin=data, capture_output=True, text=False,
        )  # fmt: skip
    out = loaded.stdout.decode(errors="replace").strip()
    if loaded.returncode != 0 or not out.startswith("count="):
        reason = out or loaded.stderr.decode(errors="replace").strip()
        raise Refused(f"{snapshot} does not load in Redis: {reason.splitlines()[-1]}")
    value = out.removeprefix("count=")
    if value != ("" if manifest.count is None else str(manifest.count)):
        raise Refused(f"Redis loads {manifest.counter_key}={value or 'nothing'} from {snapshot},"
                      f" its manifest says {manifest.count}")  # fmt: skip


def restore(snapshot: Path, manifest: Manifest) -> str:
    """Stop Redis, put the snapshot in its volume in place of its data, start it."""
    steps: list[tuple[str, list[str], Path | None]] = [
        ("stop Redis", ["stop", "redis"], None),
        (
            "replace the data in Redis's volume",
            [
                "run", "--rm", "--no-deps", "-T", "--entrypoint", "sh", "redis", "-c", REPLACE,
                "replace", str(manifest.bytes), conf_value("dbfilename"),
                conf_value("appenddirname"), conf_value("appendfilename"),
            ],
            snapshot,
        ),
        ("start Redis", ["up", "-d", "--wait", "redis"], None),
    ]  # fmt: skip
    for what, args, stdin in steps:
        done = compose(*args, stdin=stdin)
        if done.returncode != 0:
            reason = (done.stdout + done.stderr).strip().splitlines() or ["no output"]
            raise SystemExit(f"restore: could not {what}: {reason[-1]}")
    count = compose("exec", "-T", "redis", "sh", "-c", COUNT_NOW, "count", manifest.counter_key)
    return count.stdout.strip()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: restore.py backups/tally-<time>.rdb", file=sys.stderr)
        return 64
    try:
        snapshot, manifest = locate(Path(argv[1]))
        config = compose("config", "--format", "json")
        if config.returncode != 0:
            raise SystemExit(f"restore: docker compose config failed: {config.stderr.strip()}")
        services = json.loads(config.stdout)["services"]
        if "sentinel-1" in services:
            raise Refused("the HA topology is restored by hand: docs/RUNBOOK.md, "
                          "'Restore from a backup'")  # fmt: skip
        check(snapshot, manifest, services["redis"]["image"])
    except Refused as refused:
        print(f"restore refused: {refused}", file=sys.stderr)
        return 1
    now = restore(snapshot, manifest)
    expected = "" if manifest.count is None else str(manifest.count)
    if now != expected:
        print(f"restore: Redis answers {manifest.counter_key}={now!r} after the restore, the"
              f" backup holds {expected!r}", file=sys.stderr)  # fmt: skip
        return 1
    print(f"restored {snapshot} (taken {manifest.taken_at}): {manifest.counter_key}={now}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
