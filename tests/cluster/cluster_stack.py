"""The HA stack on the cluster's three hosts, deployed as a user would, and a client of them all.

The stack goes out with the README's own commands, pointed at the first host's engine:
`REGISTRY=... make push` from this machine's engine, the nodes labelled one Redis node
each, `REGISTRY=... HA=1 make swarm-up`. The load client is the fault tier's exactly-once
client (tests/faults/harness.py) that also does what a load balancer in front of the
nodes would: it spreads requests over every host's nginx and moves to another host when
one does not answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from ops import configuration
from stack_client import JSON
from tests.cluster.hosts import Cluster, Host
from tests.faults.ha_stack import SERVICE
from tests.faults.harness import Load, Row
from tests.support import run, wait_until

STACK = "tally"
PORT = 8080  # inside each host's namespace: no one else's port
REDIS = ("redis", "redis-2", "redis-3")
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
# The node label each Redis service is constrained to: tally.<service> (ops/swarm/swarm.yaml).
LABELS = tuple(f"tally.{name}" for name in REDIS)
SERVICE_LABEL = "com.docker.swarm.service.name"
DEPLOY = 420.0
# A host that does not answer is left alone this long by a worker (a load balancer's check).
NODE_DOWN_S = 3.0
COUNT_DEADLINE = 300.0  # a host back from a fault may take minutes to serve again
# How long the load retries a request, and waits for a 200 once a fault is over: after a
# partition or a lost leader, the managers can take a live host for lost for minutes (two,
# seen here) and restart its Redis node and Sentinel when it answers again; counting waits
# for that node's resync, or for a failover when it held the primary.
RECOVERY = 180.0


@dataclass
class ClusterStack:
    cluster: Cluster
    env: dict[str, str] = field(default_factory=dict)
    pushed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "DOCKER_HOST"},
            "REGISTRY": self.cluster.registry,
            "TALLY_STACK": STACK,
            "HTTP_PORT": str(PORT),
            "HA": "1",
            # Every request of the tests comes from one address.
            "NGINX_RATE_LIMIT": "100000r/s",
            "NGINX_RATE_BURST": "100000",
        }
        self.manager = self.cluster.hosts[0]

    @property
    def urls(self) -> list[str]:
        return [f"http://{host.address}:{PORT}" for host in self.cluster.hosts]

    def url(self, host: Host) -> str:
        return f"http://{host.address}:{PORT}"

    def make(self, *targets: str, host: Host | None = None, check: bool = True) -> str:
        """A make target with DOCKER_HOST at a host's engine (the manager by default);
        its output, stdout and stderr together."""
        env = {**self.env, "DOCKER_HOST": (host or self.manager).docker_host}
        result = run("make", "--no-print-directory", *targets, env=env, check=False, timeout=600)
        output = result.stdout + result.stderr
        if check:
            assert result.returncode == 0, output
        return output

    def push(self) -> str:
        """`REGISTRY=... make push` from this machine's engine (a loopback registry needs no
        TLS there); returns the image it pushed."""
        run("make", "--no-print-directory", "push", env=self.env, timeout=600)
        # The Makefile's name for it: $(REGISTRY)/tally-app.
        image = configuration.app_image(
            {**self.env, "TALLY_IMAGE": f"{self.cluster.registry}/tally-app"}
        )
        self.pushed.append(image)
        return image

    def forget_pushed(self) -> None:
        """This machine's engine's tags of the registry's images, and nothing else."""
        mine = [image for image in self.pushed if image.startswith(f"{self.cluster.registry}/")]
        if mine:
            run("docker", "rmi", *mine, check=False)

    def label(self) -> None:
        for host, label in zip(self.cluster.hosts, LABELS, strict=True):
            self.manager.docker("node", "update", "--label-add", f"{label}=true", host.name)

    def deploy(self) -> None:
        self.make("swarm-up")
        wait_until(self.every_node_ready, DEPLOY, "/readyz on every host", interval=1)
        wait_until(self.settled, DEPLOY, "one primary, two replicas in sync", interval=1)

    def live(self) -> list[Host]:
        return [host for host in self.cluster.hosts if host.process is not None]

    def ready(self, host: Host) -> bool:
        try:
            return httpx.get(f"{self.url(host)}/readyz", timeout=3).status_code == 200
        except httpx.TransportError:
            return False

    def every_node_ready(self) -> bool:
        return all(self.ready(host) for host in self.cluster.hosts)

    def every_replica_ready(self) -> bool:
        """/readyz through every host as many times in a row as app tasks run: each host's
        nginx takes the replicas in turn, so every replica answers through every host."""
        replicas = len(self.app_hosts())
        return replicas > 0 and all(
            self.ready(host) for host in self.cluster.hosts for _ in range(replicas)
        )

    def containers(self, host: Host, service: str) -> list[str]:
        out = host.docker(
            "ps", "-q", "--filter", f"label={SERVICE_LABEL}={STACK}_{service}",
            "--filter", "status=running", check=False, timeout=20,
        ).stdout  # fmt: skip
        return out.split()

    def cli(self, host: Host, service: str, *args: str, port: int = 6379) -> str:
        """redis-cli in the service's task on `host`, as the sentinel user ('' when none)."""
        containers = self.containers(host, service)
        if not containers:
            return ""
        command = (
            'REDISCLI_AUTH="$(cat /run/secrets/redis_sentinel_password)" '
            f"timeout 3 redis-cli -p {port} --user sentinel --no-auth-warning " + " ".join(args)
        )
        result = host.docker("exec", containers[0], "sh", "-c", command, check=False, timeout=20)
        return result.stdout.strip() if result.returncode == 0 else ""

    def redis_at(self, address: str) -> tuple[Host, str] | None:
        """The host and Redis service whose running task has `address` on the backend."""
        for host in self.live():
            for service in REDIS:
                for container in self.containers(host, service):
                    out = host.docker(
                        "inspect", "-f", "{{json .NetworkSettings.Networks}}", container,
                        check=False, timeout=20,
                    ).stdout  # fmt: skip
                    networks = json.loads(out or "{}")
                    if (networks.get(f"{STACK}_backend") or {}).get("IPAddress") == address:
                        return host, service
        return None

    def primary(self, among: list[Host] | None = None) -> tuple[Host, str] | None:
        """Where the primary is, as every Sentinel on the given hosts (default: live) names it."""
        hosts = among if among is not None else self.live()
        named = {
            self.named(host, s) for host in hosts for s in SENTINELS if self.containers(host, s)
        }
        if len(named) != 1 or not (address := named.pop()):
            return None
        return self.redis_at(address)

    def named(self, host: Host, sentinel: str) -> str:
        """The primary's address as the Sentinel on `host` names it ('' when it does not)."""
        answer = self.cli(host, sentinel, "sentinel", "get-master-addr-by-name", SERVICE,
                          port=26379)  # fmt: skip
        return answer.split("\n")[0]

    def settled(self) -> tuple[Host, str] | None:
        """Where the primary is, once every live Sentinel names it and both replicas are
        in sync with it; None until then."""
        found = self.primary()
        if found is not None and "min_slaves_good_slaves:2" in self.cli(
            *found, "info", "replication"
        ):
            return found
        return None

    def role(self, host: Host, service: str) -> str:
        info = self.cli(host, service, "info", "replication")
        return next((line[5:] for line in info.splitlines() if line.startswith("role:")), "")

    def app_hosts(self, among: list[Host] | None = None) -> list[str]:
        """The host of each running app task, as the managers (on `among`) see it."""
        for host in among if among is not None else self.live():
            result = host.docker(
                "service", "ps", f"{STACK}_app", "--filter", "desired-state=running",
                "--format", "{{.Node}} {{.CurrentState}}", check=False, timeout=20,
            )  # fmt: skip
            if result.returncode == 0:
                return sorted(
                    line.split()[0] for line in result.stdout.splitlines() if " Running " in line
                )
        return []

    def brief(self) -> str:
        """The cluster in one line, for a failure's summary line (CI shows that line):
        each live host's Redis role and good replicas, what its Sentinel names as the
        primary, and the nodes as a manager sees them."""
        parts = []
        for host in self.live():
            for service in REDIS:
                info = self.cli(host, service, "info", "replication")
                if info:
                    fields = dict(
                        line.split(":", 1) for line in info.splitlines() if ":" in line
                    )  # fmt: skip
                    good = fields.get("min_slaves_good_slaves", "-")
                    parts.append(f"{host.name} {service} {fields.get('role', '?')} good={good}")
            for sentinel in SENTINELS:
                if self.containers(host, sentinel):
                    parts.append(f"{sentinel} names {self.named(host, sentinel) or '?'}")
        found = self.ask_a_manager(
            "node", "ls", "--format", "{{.Hostname}}={{.Status}}/{{.ManagerStatus}}"
        )
        if found is not None:
            parts.append("nodes " + " ".join(found[1].split()))
        return "; ".join(parts)

    def ask_a_manager(self, *args: str) -> tuple[Host, str] | None:
        """A docker command on the first live host whose manager answers it: that host and
        its output (None when no manager answers, as while the swarm has no leader)."""
        for host in self.live():
            result = host.docker(*args, check=False, timeout=20)
            if result.returncode == 0:
                return host, result.stdout
        return None

    def state(self) -> str:
        """For a failure's report: each live host's containers and the last log lines of
        each service's two newest, the nodes and the stack's tasks as a manager sees them."""
        parts = []
        for host in self.live():
            listed = host.docker(
                "ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Status}}", check=False, timeout=20
            )
            parts.append(
                f"{host.name} ({host.address}), docker ps -a:\n{listed.stdout}{listed.stderr}"
            )
            shown_per_service: Counter[str] = Counter()
            for line in listed.stdout.splitlines():
                # Each service's two newest containers (a crash loop leaves many).
                container, _, rest = line.partition(" ")
                service = rest.partition(".")[0]
                shown_per_service[service] += 1
                if service.startswith(f"{STACK}_") and shown_per_service[service] <= 2:
                    logs = host.docker("logs", container, check=False, timeout=30)
                    lines = (logs.stdout + logs.stderr).splitlines()
                    # An app's 500 logs its exception as unhandled_exception.
                    unhandled = [entry for entry in lines if "unhandled_exception" in entry]
                    shown = "\n".join(unhandled[-2:] + lines[-8:])
                    parts.append(f"  {line}, its last log lines:\n{shown}")
        found = self.ask_a_manager("node", "ls")
        if found is not None:
            host, nodes = found
            tasks = host.docker(
                "stack", "ps", "--no-trunc", "--format",
                "{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}",
                STACK, check=False, timeout=30,
            )  # fmt: skip
            parts.append(f"docker node ls on {host.name}:\n{nodes}")
            parts.append(f"docker stack ps {STACK}:\n{tasks.stdout}{tasks.stderr}")
        return "\n".join(parts)


class ClusterLoad(Load):
    """The exactly-once load over every host: each request to the next host in turn, a
    retry (same key) to another one, and a host that failed skipped for a few seconds."""

    def __init__(self, urls: list[str], retry: bool = True) -> None:
        super().__init__(urls[0], retry=retry, give_up_after=RECOVERY, stalled=RECOVERY)
        self.urls = urls
        self.down_until: dict[str, float] = {}

    def __enter__(self) -> ClusterLoad:
        self.start_count = self._count()
        self.started = time.monotonic()
        self._thread.start()
        return self

    def _count(self) -> int:
        """The count through whichever host answers, retried with one key until one does
        (a 503 while a replica resyncs is the stack saying "not now", not an answer)."""
        key = uuid.uuid4().hex
        deadline = time.monotonic() + COUNT_DEADLINE
        turn = 0
        last: dict[str, str] = {}  # each host's last answer, for the message
        while True:
            url = self.urls[turn % len(self.urls)]
            turn += 1
            try:
                response = httpx.get(
                    f"{url}/count", headers={**JSON, "Idempotency-Key": key}, timeout=5
                )
                if response.status_code == 200:
                    count: int = response.json()["count"]
                    return count
                last[url] = f"{response.status_code} {response.text[:80]!r}"
            except httpx.TransportError as exc:
                last[url] = repr(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"no host counted within {COUNT_DEADLINE} s: {last}")
            time.sleep(0.2)

    def finish(self, fault: str, fault_at: float) -> Row:
        self.stop()
        return self.row(fault, fault_at, end_count=self._count() - 1)

    def _target(self, turn: int) -> str:
        """The next host in turn that has not failed in the last NODE_DOWN_S."""
        now = time.monotonic()
        for offset in range(len(self.urls)):
            url = self.urls[(turn + offset) % len(self.urls)]
            if self.down_until.get(url, 0) <= now:
                return url
        return self.urls[turn % len(self.urls)]

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency * len(self.urls))
        timeout = httpx.Timeout(10, connect=2)
        async with httpx.AsyncClient(limits=limits, timeout=timeout, headers=JSON) as client:
            await asyncio.gather(*(self._worker(client, i) for i in range(self.concurrency)))

    def _unreachable(self, url: str) -> None:
        self.down_until[url] = time.monotonic() + NODE_DOWN_S
