"""`make rotate-secrets`: a new random password for every Redis user (app, exporter,
replication, sentinel, backup), with no failed request (README, "Operating tally").

Redis ACL users may hold several passwords at once, so each user gets the new one beside
the old, every client moves to the new one, and only then is the old one removed:

1. `secrets rotate` (ops/secrets/init.sh) keeps each password as NAME.old, writes a new
   NAME (a temporary file, then a rename), and writes every derived file again: the ACL
   file and the Sentinels' users accept both, the clients' files hold the new one.
2. Every Redis node reloads its ACL file (`ACL LOAD`: connections of users that still exist
   stay up); every Sentinel takes the same two passwords per user (`ACL SETUSER`).
3. The clients move: each node's `masterauth`, each Sentinel's `auth-pass` and
   `sentinel-pass` (`CONFIG SET`, `SENTINEL SET`, `SENTINEL CONFIG SET`), the app replicas
   through `make deploy` (ops/deploy.py: each new replica reads the new file), the
   exporter and the scheduled backups by a restart.
4. `secrets rotate-finish` drops the .old files and writes the files again; the nodes
   reload, the Sentinels take the users as written: the old passwords are refused.

A run cut short is resumed by running it again (init.sh keeps a new password while its
.old exists). Passwords never leave the containers: each command that carries one is
built by a shell inside the container from the secret file and fed to redis-cli on its
standard input, and nothing prints one. The Redis nodes' `sentinel` user may run
`ACL LOAD` and `CONFIG SET` for this (ops/secrets/init.sh).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

NODES = ("redis", "redis-2", "redis-3")
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
EXPORTER = "redis-exporter"
BACKUP = "backup"  # the scheduled backups (the backup profile)
DEPLOY = Path(__file__).with_name("deploy.py")
SERVICE = next(  # the primary's name the Sentinels monitor: sentinel.conf is its one source
    line.split()[2]
    for line in (Path(__file__).parent / "redis" / "sentinel.conf").read_text().splitlines()
    if line.startswith("sentinel monitor ")
)

# redis-cli as the sentinel user, with its password from the secret file: mid-rotation
# the old one (the only one a node knows before it reloads), else the current one.
LOGIN = (
    "s=/run/secrets/redis_sentinel_password; "
    'REDISCLI_AUTH="$(cat $s.old 2>/dev/null || cat $s)"; export REDISCLI_AUTH; '
)
CLI = "redis-cli --no-auth-warning --user sentinel"
# What a node runs to take the ACL file as written now.
NODE_RELOAD = f"{LOGIN} echo 'ACL LOAD' | {CLI}"
# What a Sentinel runs: each user of sentinel_auth.conf, its passwords set anew.
SENTINEL_USERS = (
    f"{LOGIN} grep '^user ' /run/secrets/sentinel_auth.conf"
    ' | while read -r _ name rules; do echo "ACL SETUSER $name resetpass $rules"; done'
    f" | {CLI} -p 26379"
)
# The clients' side: a node's masterauth, a Sentinel's logins to the nodes and its peers.
NODE_CLIENT = (
    f"{LOGIN} printf 'CONFIG SET masterauth %s\\n'"
    ' "$(cat /run/secrets/redis_replication_password)" | ' + CLI
)
SENTINEL_CLIENT = (
    f'{LOGIN} p="$(cat $s)"; '
    f"printf 'SENTINEL SET {SERVICE} auth-pass %s\\nSENTINEL CONFIG SET sentinel-pass %s\\n'"
    f' "$p" "$p" | {CLI} -p 26379'
)


class RotationError(Exception):
    """Stops the rotation; its message is the one line the user sees."""


def compose(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(  # noqa: S603 (fixed commands, no shell on this side)
        ("docker", "compose", *args),  # noqa: S607
        capture_output=True, text=True, input=stdin, timeout=600, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RotationError(f"docker compose {args[0]} {args[-1][:40]!r} failed: "
                            f"{result.stderr.strip()[-300:]}")  # fmt: skip
    return result.stdout


def log(message: str) -> None:
    print(f"rotate-secrets: {message}", flush=True)


def running() -> set[str]:
    return set(compose("ps", "--services", "--status", "running").split())


def in_each(services: Sequence[str], script: str) -> None:
    """Run `script` in each service's container; every reply must be OK."""
    for service in services:
        replies = compose("exec", "-T", service, "sh", "-c", script).split()
        if not replies or any(reply != "OK" for reply in replies):
            # Replies name the error (WRONGPASS, NOPERM), never a password.
            raise RotationError(f"{service} answered {' '.join(replies)[:200]!r}")


def secrets(step: str) -> None:
    compose("run", "--rm", "--no-deps", "-T", "secrets", step)


def rotate() -> None:
    started = time.monotonic()
    up = running()
    nodes = [n for n in NODES if n in up]
    sentinels = [s for s in SENTINELS if s in up]
    if not nodes:
        raise RotationError("no Redis node is running: start the stack first")
    secrets("rotate")
    log("new passwords written beside the old ones")
    in_each(nodes, NODE_RELOAD)
    in_each(sentinels, SENTINEL_USERS)
    log(f"{len(nodes)} Redis nodes and {len(sentinels)} Sentinels accept both")
    if sentinels:  # replication: the HA topology's nodes and Sentinels log in to each other
        in_each(nodes, NODE_CLIENT)
        in_each(sentinels, SENTINEL_CLIENT)
    result = subprocess.run((sys.executable, str(DEPLOY)), check=False)  # noqa: S603
    if result.returncode != 0:
        raise RotationError("the app replicas did not move (make deploy, above); run again")
    for reader in (EXPORTER, BACKUP):  # each reads its password once, at start
        if reader in up:
            compose("restart", reader)
    log("every client uses the new passwords")
    secrets("rotate-finish")
    in_each(nodes, NODE_RELOAD)
    in_each(sentinels, SENTINEL_USERS)
    log(f"old passwords removed; done in {time.monotonic() - started:.1f} s")


def main(argv: Sequence[str]) -> int:
    if argv:
        print("usage: ops/rotate_secrets.py (COMPOSE_FILE etc. from the environment)")
        return 64
    try:
        rotate()
    except RotationError as exc:
        print(f"rotate-secrets failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
