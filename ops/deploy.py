"""`make deploy`: replace every app replica with the current image, one at a time, with
nothing cut, lost or counted twice (README, "Operating tally").

First a trial: the new image and settings run once as a one-off `compose run` container,
which nginx cannot resolve; if it exits or never turns healthy (the image's HEALTHCHECK)
it is removed, the replicas in service are untouched, and the deploy stops with one line
and exit 1. Then each round: `docker compose up --no-start --no-deps --no-recreate --scale
app=N+1 app` makes one replica of the new image beside the old ones, started without its
restart policy until it is healthy; it must turn healthy and then answer a request sent
through nginx (so nginx has resolved it and sends it traffic), or it is removed and the
deploy stops the same way. Then one old replica is drained (SIGUSR1, service/drain.py)
and, once it says it is drained, stopped and removed. After N rounds the N replicas all
run the new image, whether or not the image changed.

Why a drain, and why this one. nginx resolves `app` through Docker's DNS every 2 s, and
Docker's DNS on Compose lists a container until it stops or leaves the network, healthy or
not: readiness alone takes nothing out of nginx's rotation. Three ways were weighed:
- `docker network disconnect` the old replica: it leaves the DNS answer, but its address
  goes silent at once, so what it holds is cut, and nginx, until it re-resolves, waits out
  its 1 s connect timeout on it; a retry after nginx has re-resolved in the meantime is
  nginx's own 502 (tests/faults/test_faults.py saw exactly that when a replica is killed).
- a network alias nginx resolves and the deploy moves: Docker changes a container's aliases
  only by disconnecting it, which is the first way again.
- a drain in the app (chosen): the replica closes its listening socket and its idle
  keep-alive connections and finishes what it holds. nginx's next connect to it is refused at
  once (an `error` it retries on another replica within the same request, GET being
  idempotent and the request id making it exactly once) and two refusals bench it for 3 s
  (`max_fails=2 fail_timeout=3s`). Its address keeps answering (refusing) while nginx still
  lists it, instead of going silent; it goes quiet only when the drained, idle container is
  stopped, and the deploy first sends requests through nginx so that the old replica is
  freshly benched for the 2 s nginx needs to re-resolve `app` without it.
  What remains: when nginx's list of addresses changes (a replica added or removed) while
  a request is being retried, nginx can answer that request with its own 502 after its
  connect timeout; the fault tier saw one per deploy at most. Taking a replica out of
  the rotation without removing its address (an upstream list written here and an
  `nginx -s reload`) would close that gap.

Uses only `docker compose` and `docker inspect`/`kill`/`stop`/`rm` on this project's app
containers. The compose project is the caller's: COMPOSE_FILE, COMPOSE_PROJECT_NAME and
TALLY_VERSION reach compose through the environment. Prints no secret.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

SERVICE = "app"
# The file a drained replica writes (service/drain.py: tempfile's /tmp, a tmpfs here).
DRAINED = "/tmp/tally-drained"  # noqa: S108
# How long a new replica may take to turn healthy: the image's start period is 60 s.
HEALTHY_WITHIN = 120.0
# How long nginx may take to send a new replica its first request (it re-resolves every 2 s).
ROUTED_WITHIN = 60.0
# A drain lasts at most GRACEFUL_TIMEOUT (10 s by default); docker stop's own grace is longer.
DRAINED_WITHIN = 60.0
POLL = 0.5


class DeployError(Exception):
    """Stops the deploy; its message is the one line the user sees."""


def run(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(  # noqa: S603 (fixed commands, no shell)
        args, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise DeployError(f"{' '.join(args[:4])} ... failed: {result.stderr.strip()[-300:]}")
    return result


def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("docker", "compose", *args, check=check)


def log(message: str) -> None:
    print(f"deploy: {message}", flush=True)


@dataclass(frozen=True)
class Replica:
    id: str
    name: str
    hostname: str  # its X-Served-By (REPLICA_ID defaults to the container's hostname)
    image: str  # the image id it runs
    restart: str  # its restart policy, as compose gave it


def replicas(running: bool = True) -> list[Replica]:
    """The service's containers (only those running, by default), oldest first."""
    ids = compose("ps", "-a", "-q", SERVICE).stdout.split()
    if not ids:
        return []
    found = json.loads(run("docker", "inspect", *ids).stdout)
    found.sort(key=lambda c: c["Created"])
    return [
        Replica(
            c["Id"],
            c["Name"].lstrip("/"),
            c["Config"]["Hostname"],
            c["Image"],
            c["HostConfig"]["RestartPolicy"]["Name"],
        )
        for c in found
        if c["State"]["Running"] or not running
    ]


def image_id(reference: str) -> str:
    return str(run("docker", "image", "inspect", "-f", "{{.Id}}", reference).stdout.strip())


def app_image() -> str:
    config = json.loads(compose("config", "--format", "json").stdout)
    return str(config["services"][SERVICE]["image"])


def remove(replica_id: str) -> None:
    run("docker", "stop", "-t", "15", replica_id, check=False)
    run("docker", "rm", "-f", replica_id, check=False)


def wait_healthy(replica: Replica, image: str) -> None:
    """Until the new replica is healthy; a DeployError when it exits, restarts or runs out
    of time (the caller removes it)."""
    deadline = time.monotonic() + HEALTHY_WITHIN
    while True:
        [container] = json.loads(run("docker", "inspect", replica.id).stdout)
        state = container["State"]
        health = (state.get("Health") or {}).get("Status", "")
        if health == "healthy":
            return
        # The stack restarts a replica that exits (restart: unless-stopped): a restart
        # count is an exit too, whose code is gone by the time the process runs again.
        restarts = container["RestartCount"]
        if not state["Running"] or state["Restarting"] or state["ExitCode"] or restarts:
            code = f" with code {state['ExitCode']}" if state["ExitCode"] else ""
            raise DeployError(f"{replica.name} ({image}) exited{code}{last_words(replica.id)}")
        if health == "unhealthy":
            raise DeployError(f"{replica.name} ({image}) turned unhealthy")
        if time.monotonic() > deadline:
            raise DeployError(
                f"{replica.name} ({image}) was not healthy within {HEALTHY_WITHIN:.0f} s"
            )
        time.sleep(POLL)


def last_words(container: str) -> str:
    """The last line the container wrote to stderr (the app's configuration error names
    the variable, never its secret value), to say why it stopped."""
    lines = run("docker", "logs", "--tail", "5", container, check=False).stderr.strip()
    return f": {lines.splitlines()[-1][:200]}" if lines else ""


def trial(image: str) -> None:
    """The new image and settings, started once where nginx cannot see them: a one-off
    `compose run` container has the service's networks, secrets and environment but not
    its DNS name, so a replica that exits or never turns healthy is found out before
    nginx ever resolves it (an address nginx holds that goes silent costs it a 1 s
    connect timeout, and a retry across its re-resolution a 502)."""
    container = compose("run", "-d", "--no-deps", SERVICE).stdout.strip()
    try:
        [found] = json.loads(run("docker", "inspect", container).stdout)
        name = f"a trial replica {found['Name'].lstrip('/')}"
        wait_healthy(Replica(found["Id"], name, "", found["Image"], ""), image)
    finally:
        remove(container)


def through_nginx(requests: int) -> set[str]:
    """Who answered `requests` GET /healthz sent through nginx from inside its container."""
    loop = (
        f"for i in $(seq {requests}); do "
        "curl -s -o /dev/null -D - http://127.0.0.1:80/healthz; done"
    )
    out = compose("exec", "-T", "nginx", "sh", "-c", loop, check=False).stdout
    return {
        line.split(":", 1)[1].strip()
        for line in out.splitlines()
        if line.lower().startswith("x-served-by:")
    }


def wait_routed(replica: Replica, count: int) -> None:
    deadline = time.monotonic() + ROUTED_WITHIN
    while replica.hostname not in through_nginx(2 * count):
        if time.monotonic() > deadline:
            raise DeployError(f"nginx sent {replica.name} no request within {ROUTED_WITHIN:.0f} s")
        time.sleep(POLL)


def drain(replica: Replica, count: int) -> None:
    """Drain the old replica, wait until it holds nothing, bench it in nginx, stop it."""
    run("docker", "kill", "--signal", "USR1", replica.id)
    deadline = time.monotonic() + DRAINED_WITHIN
    while run("docker", "exec", replica.id, "test", "-e", DRAINED, check=False).returncode:
        if not json.loads(run("docker", "inspect", replica.id).stdout)[0]["State"]["Running"]:
            break
        if time.monotonic() > deadline:
            log(f"{replica.name} still drains after {DRAINED_WITHIN:.0f} s; stopping it")
            break
        time.sleep(POLL)
    # Requests through nginx, some of which it tries on the drained replica, refused: that
    # benches it for 3 s, longer than nginx needs to re-resolve `app` once it is gone.
    through_nginx(2 * count)
    remove(replica.id)


def deploy() -> None:
    started = time.monotonic()
    image = app_image()
    log(f"building {image}")
    compose("build", SERVICE)
    new_image = image_id(image)
    old = replicas()
    if not old:
        raise DeployError(f"no {SERVICE} replica is running: start the stack first")
    count = len(old)
    try:
        trial(image)
    except DeployError as exc:
        raise DeployError(f"{exc}; removed it, the old replicas keep serving") from None
    log(f"replacing {count} replicas with {image}, one at a time")
    for replica in old:
        before = {r.id for r in replicas(running=False)}
        compose(
            "up", "--no-start", "--no-deps", "--no-recreate",
            "--scale", f"{SERVICE}={count + 1}", SERVICE,
        )  # fmt: skip
        created = [r for r in replicas(running=False) if r.id not in before]
        if len(created) != 1:
            raise DeployError(f"compose made {len(created)} new {SERVICE} replicas, not 1")
        [new] = created
        # Started without its restart policy until it is healthy: a replica that exits stays
        # down and leaves nginx's view once, instead of coming and going with each restart
        # (each time nginx waits out its connect timeout on an address gone silent).
        run("docker", "update", "--restart", "no", new.id)
        run("docker", "start", new.id)
        try:
            wait_healthy(new, image)
            wait_routed(new, count + 1)
        except DeployError as exc:
            remove(new.id)
            raise DeployError(f"{exc}; removed it, the old replicas keep serving") from None
        run("docker", "update", "--restart", new.restart, new.id)
        drain(replica, count + 1)
        log(f"{new.name} serves, {replica.name} drained and removed")
    left = replicas()
    stale = [r.name for r in left if r.image != new_image]
    if len(left) != count or stale:
        raise DeployError(f"ended with {len(left)} replicas, not on {image}: {stale}")
    log(f"{count} replicas on {image} in {time.monotonic() - started:.1f} s")


def main(argv: Sequence[str]) -> int:
    if argv:
        print("usage: ops/deploy.py (TALLY_VERSION, COMPOSE_FILE from the environment)")
        return 64
    try:
        deploy()
    except DeployError as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
