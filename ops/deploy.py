"""`make deploy`: replace every app replica with the current image, one at a time, with
no failed request and nothing lost or counted twice (README, "Operating tally").

nginx resolves `app` through Docker's DNS every 2 s, and Docker's DNS lists a container
until it stops, healthy or not; a peer list that changes under nginx while a request is
being retried, or an address that goes silent before nginx has re-resolved, is nginx's
own 502. So the deploy takes the peer list out of DNS's hands while it runs: it pins
nginx to the replicas it names (the rendered `server app:8000 resolve ...` line becomes
one `server ADDRESS:8000 ...` line per replica, checked with `nginx -t`, then `nginx -s
reload`) and changes that list only by reloads. A reload is graceful: new workers take
the new list, old ones finish what they hold, retries included, on the old list, whose
replicas all still run. Each round:

1. `docker compose up --no-start --no-deps --no-recreate --scale app=N+1 app` makes one
   replica of the new image; it starts without its restart policy and must turn healthy
   (the image's HEALTHCHECK) within HEALTHY_WITHIN. nginx is pinned and never sees it
   before that: one that exits or stays unhealthy is removed, the old ones keep serving,
   and the deploy stops with one line and exit 1.
2. nginx is pinned to the new replica and the old ones but the one leaving; once the old
   workers have exited (nothing holds the old list), a request through nginx must reach
   the new replica.
3. The leaving replica gets nothing any more: `docker stop` (SIGTERM, Hypercorn's
   graceful shutdown) and `docker rm`.

At the end, and whenever the deploy stops early, nginx's config is rendered again from
its templates (ops/nginx/reload.sh, what `make nginx-reload` runs) and reloaded: `app`
is resolved through DNS again, which by then lists exactly the replicas that run.

Uses only `docker compose` and `docker inspect`/`update`/`start`/`stop`/`rm` on this
project's containers. The compose project is the caller's: COMPOSE_FILE,
COMPOSE_PROJECT_NAME and TALLY_VERSION reach compose through the environment. Prints no
secret.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SERVICE = "app"
NGINX = "nginx"
# The rendered config nginx runs and the script that renders it again from the templates.
NGINX_CONF = "/etc/nginx/conf.d/tally.conf"
RELOAD = Path(__file__).parent / "nginx" / "reload.sh"
# The upstream's one server line as the template writes it: `server HOST:PORT resolve ...;`
RESOLVED = re.compile(r"^(\s*)server (\S+):(\d+) resolve( [^;]*)?;\s*$", re.MULTILINE)
# How long a new replica may take to turn healthy: the image's start period is 60 s.
HEALTHY_WITHIN = 120.0
# How long nginx's old workers may take to finish what they hold (proxy timeouts: 6 s).
RELOADED_WITHIN = 60.0
# How long a request through nginx may take to reach the new replica after a reload.
ROUTED_WITHIN = 30.0
POLL = 0.5
# How many of nginx's worker processes are old ones finishing their requests (a worker's
# title is its command line; this script's own command lines do not start with it).
OLD_WORKERS = (
    "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n'"
    " | grep -c '^nginx: worker process is shutting down' || true"
)


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
    networks: tuple[tuple[str, str], ...]  # (network, its IP address there)


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
            tuple((k, n["IPAddress"]) for k, n in c["NetworkSettings"]["Networks"].items()),
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


class Nginx:
    """The nginx container's upstream `app`, pinned to named replicas or resolved by DNS."""

    def __init__(self) -> None:
        [container] = json.loads(run("docker", "inspect", *self._ids()).stdout)
        self.networks = set(container["NetworkSettings"]["Networks"])
        self.unpin()  # the config as rendered from the templates (a deploy cut short pins)
        self.rendered = self.run(f"cat {NGINX_CONF}")
        self.server = RESOLVED.search(self.rendered)
        if self.server is None:
            raise DeployError(f"{NGINX_CONF} has no `server HOST:PORT resolve ...;` line")

    @staticmethod
    def _ids() -> list[str]:
        ids = compose("ps", "-q", NGINX).stdout.split()
        if not ids:
            raise DeployError(f"{NGINX} is not running: start the stack first")
        return ids[:1]

    def run(self, script: str, stdin: str | None = None) -> str:
        result = subprocess.run(  # noqa: S603 (a fixed command; the script is ours)
            ("docker", "compose", "exec", "-T", NGINX, "sh", "-c", script),  # noqa: S607
            capture_output=True, text=True, input=stdin, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise DeployError(f"nginx: {(result.stderr or result.stdout).strip()[-300:]}")
        return result.stdout

    def pin(self, peers: Sequence[Replica]) -> None:
        """The upstream's server line becomes one line per peer, by address; a checked
        reload."""
        assert self.server is not None
        indent, port, params = self.server[1], self.server[3], self.server[4] or ""
        lines = [f"{indent}# pinned by make deploy (ops/deploy.py)"]
        for peer in peers:
            address = next((ip for net, ip in peer.networks if net in self.networks), None)
            if address is None:
                raise DeployError(f"{peer.name} shares no network with {NGINX}")
            lines.append(f"{indent}server {address}:{port}{params};")
        start, end = self.server.span()
        pinned = self.rendered[:start] + "\n".join(lines) + "\n" + self.rendered[end:]
        self.run(f"cat >{NGINX_CONF}.new && mv {NGINX_CONF}.new {NGINX_CONF}", stdin=pinned)
        self.run("nginx -t -q && nginx -s reload")
        self.wait_reloaded()

    def unpin(self) -> None:
        """The config rendered again from the templates (`app` through DNS), reloaded."""
        self.run("sh -s", stdin=RELOAD.read_text())
        self.wait_reloaded()

    def wait_reloaded(self) -> None:
        """Until the old workers have exited: nothing runs on the previous peer list."""
        deadline = time.monotonic() + RELOADED_WITHIN
        while self.run(OLD_WORKERS).strip() != "0":
            if time.monotonic() > deadline:
                raise DeployError(f"nginx's old workers still run after {RELOADED_WITHIN:.0f} s")
            time.sleep(POLL)


def start(count: int, image: str) -> Replica:
    """One more replica of the new image, healthy; removed again when it is not."""
    before = {r.id for r in replicas(running=False)}
    compose(
        "up", "--no-start", "--no-deps", "--no-recreate",
        "--scale", f"{SERVICE}={count + 1}", SERVICE,
    )  # fmt: skip
    created = [r for r in replicas(running=False) if r.id not in before]
    if len(created) != 1:
        for extra in created:
            remove(extra.id)
        raise DeployError(f"compose made {len(created)} new {SERVICE} replicas, not 1")
    [new] = created
    # Started without its restart policy until it is healthy: one that exits stays down.
    run("docker", "update", "--restart", "no", new.id)
    run("docker", "start", new.id)
    try:
        wait_healthy(new, image)
    except DeployError as exc:
        remove(new.id)
        raise DeployError(f"{exc}; removed it, the old replicas keep serving") from None
    run("docker", "update", "--restart", new.restart, new.id)
    [started] = [r for r in replicas() if r.id == new.id]  # with its addresses
    return started


def deploy() -> None:
    began = time.monotonic()
    image = app_image()
    log(f"building {image}")
    compose("build", SERVICE)
    new_image = image_id(image)
    old = replicas()
    if not old:
        raise DeployError(f"no {SERVICE} replica is running: start the stack first")
    count = len(old)
    nginx = Nginx()
    log(f"replacing {count} replicas with {image}, one at a time")
    try:
        serving = list(old)
        nginx.pin(serving)
        for leaving in old:
            new = start(count, image)
            serving = [r for r in serving if r is not leaving] + [new]
            nginx.pin(serving)
            wait_routed(new, count)
            remove(leaving.id)  # nginx sends it nothing any more: SIGTERM, graceful
            log(f"{new.name} serves, {leaving.name} out of nginx and removed")
    finally:
        nginx.unpin()
    left = replicas()
    stale = [r.name for r in left if r.image != new_image]
    if len(left) != count or stale:
        raise DeployError(f"ended with {len(left)} replicas, not on {image}: {stale}")
    log(f"{count} replicas on {image} in {time.monotonic() - began:.1f} s")


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
