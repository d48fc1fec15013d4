"""Creates the stack's Swarm secrets from random bytes, the same files the compose stack makes.

ops/secrets/init.sh (compose's one-shot) runs in a throwaway redis:8.0 container with
no network, on a tmpfs: random passwords and the Redis ACL file with their SHA-256
hashes. The files come back as a tar stream on stdout, straight into
`docker secret create`: nothing touches the disk. A secret cannot change, and the ACL
must match the passwords, so the set is made whole or not at all; existing ones are
kept (the stack's passwords outlive a redeploy, like the compose stack's volume).

Alertmanager's receiver secrets are the exception: made "off" (a lone newline, since a
Swarm secret cannot be empty), and replaced one at a time by `--set`, which reads the new
value on stdin (nothing, or blanks, turns the receiver off) and hands it to a running
Alertmanager, restarting it, as `docker compose restart alertmanager` does on compose.

    TALLY_STACK=tally uv run python ops/swarm/secrets.py           # create when missing
    TALLY_STACK=tally uv run python ops/swarm/secrets.py --remove  # delete them
    TALLY_STACK=tally uv run python ops/swarm/secrets.py --set alertmanager_webhook_url <url.txt
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
INIT = HERE.parent / "secrets" / "init.sh"
# init.sh reads the Sentinels' monitored primary's name from here (its one source).
SENTINEL_CONF = HERE.parent / "redis" / "sentinel.conf"
STACK_FILES = ("stack.yaml", "observability.yaml", "stack-ha.yaml", "observability-ha.yaml")
# The failover topology's nodes and Sentinels: the exporter's password map names each, so
# one set of secrets serves either topology (compose.ha.yaml's x-topology, their one source).
TOPOLOGY = yaml.safe_load((HERE.parent.parent / "compose.ha.yaml").read_text())["x-topology"]
LABEL = "tally.stack"
# The receivers' secrets, as swarm.yaml hands them to Alertmanager (a static test checks
# they are the ones ops/secrets/init.sh stores and render.sh reads).
RECEIVERS = {
    secret["source"]: secret
    for secret in yaml.safe_load((HERE / "swarm.yaml").read_text())["services"]["alertmanager"][
        "secrets"
    ]
}
OFF = b"\n"


def wanted(stack: str) -> list[str]:
    """Every secret the stack files use, as `<stack>_<file init.sh writes>`."""
    keys: set[str] = set()
    for name in STACK_FILES:
        keys |= set(yaml.safe_load((HERE / name).read_text()).get("secrets", {}))
    return sorted(f"{stack}_{key}" for key in keys)


def existing() -> set[str]:
    out = subprocess.run(
        ["docker", "secret", "ls", "--format", "{{.Name}}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return set(out.split())


def generate() -> dict[str, bytes]:
    """init.sh's files, made in a container that keeps them in memory and exits."""
    settings = {**TOPOLOGY, **{k: os.environ[k] for k in ("COUNTER_KEY",) if k in os.environ}}
    environment = [arg for name, value in settings.items() for arg in ("-e", f"{name}={value}")]
    result = subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "none", "--read-only",
         "--tmpfs", "/secrets:mode=0700", "--cap-drop", "ALL",
         "--cap-add", "CHOWN", "--cap-add", "DAC_OVERRIDE", "--cap-add", "FOWNER",
         "-v", f"{SENTINEL_CONF}:/ops/redis/sentinel.conf:ro",
         *environment, "--entrypoint", "/bin/sh", "redis:8.0",
         "-c", "sh -s >&2 && tar -C /secrets -cf - ."],
        input=INIT.read_bytes(), capture_output=True, check=True,
    )  # fmt: skip
    files = {}
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as archive:
        for member in archive.getmembers():
            data = archive.extractfile(member) if member.isfile() else None
            if data is not None:
                files[Path(member.name).name] = data.read()
    return files


def store(stack: str, name: str, value: bytes) -> None:
    subprocess.run(
        ["docker", "secret", "create", "--label", f"{LABEL}={stack}", name, "-"],
        input=value, capture_output=True, check=True,
    )  # fmt: skip


def create(stack: str) -> None:
    receivers = {f"{stack}_{receiver}" for receiver in RECEIVERS}
    names = [name for name in wanted(stack) if name not in receivers]
    found = existing()
    for name in sorted(receivers - found):
        store(stack, name, OFF)
        print(f"secrets: created {name} (off)")
    present = found & set(names)
    if present == set(names):
        print(f"secrets: {len(names)} for stack {stack} exist, kept")
        return
    if present:
        sys.exit(
            f"secrets: only some of the stack's secrets exist ({', '.join(sorted(present))});"
            " the ACL must match the passwords: remove them (--remove) and run this again"
        )
    files = generate()
    for name in names:
        store(stack, name, files[name.removeprefix(f"{stack}_")])
    print(f"secrets: created {', '.join(names)}")


def set_receiver(stack: str, receiver: str, value: bytes) -> None:
    """Replace a receiver's secret. A Swarm secret cannot change, nor be removed while a
    service uses it: Alertmanager lets go of it, it is made again, and given back."""
    if receiver not in RECEIVERS:
        sys.exit(f"secrets: '{receiver}' is not a receiver secret ({', '.join(RECEIVERS)})")
    name, service = f"{stack}_{receiver}", f"{stack}_alertmanager"
    running = (
        subprocess.run(["docker", "service", "inspect", service], capture_output=True).returncode
        == 0
    )
    update = ["docker", "service", "update", "--quiet", "--detach=false"]
    if running:
        subprocess.run([*update, "--secret-rm", name, service], capture_output=True, check=True)
    if name in existing():
        subprocess.run(["docker", "secret", "rm", name], capture_output=True, check=True)
    store(stack, name, value if value.strip() else OFF)
    if not running:
        print(f"secrets: {name} written; Alertmanager reads it when the stack is deployed")
        return
    spec = RECEIVERS[receiver]
    option = (
        f"source={name},target={receiver},uid={spec['uid']},gid={spec['gid']},"
        f"mode=0{spec['mode']:o}"
    )
    subprocess.run([*update, "--secret-add", option, service], capture_output=True, check=True)
    print(f"secrets: {name} written; {service} restarted with it")


def remove(stack: str) -> None:
    present = sorted(existing() & set(wanted(stack)))
    if present:
        subprocess.run(["docker", "secret", "rm", *present], capture_output=True, check=True)
    print(f"secrets: removed {len(present)} for stack {stack}")


def main() -> None:
    stack = os.environ.get("TALLY_STACK") or "tally"
    if "--remove" in sys.argv[1:]:
        remove(stack)
    elif sys.argv[1:2] == ["--set"] and len(sys.argv) == 3:
        set_receiver(stack, sys.argv[2], sys.stdin.buffer.read())
    else:
        create(stack)


if __name__ == "__main__":
    main()
