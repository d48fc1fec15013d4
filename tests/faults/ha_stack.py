"""The HA topology (compose.yaml + compose.ha.yaml) under a project of its own, and
what the failover tests ask of it: which node is the primary, and is it settled."""

from __future__ import annotations

import json
from collections.abc import Mapping

from tests.compose_stack import Stack
from tests.support import ROOT, run, wait_until

NODES = ("redis", "redis-2", "redis-3")
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
# The name ops/redis/sentinel.conf monitors.
SERVICE = next(
    line.split()[2]
    for line in (ROOT / "ops" / "redis" / "sentinel.conf").read_text().splitlines()
    if line.startswith("sentinel monitor ")
)


class HAStack(Stack):
    files = ("compose.yaml", "compose.ha.yaml")
    # Prometheus and the exporter too: the replication panels and alerts are tested here.
    services = (*NODES, *SENTINELS, "app", "nginx", "redis-exporter", "prometheus")
    receivers = False

    def up(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        """`up --wait` gives up at a container's first unhealthy report, and on a loaded
        machine one healthcheck can time out while the service is fine: then wait for
        every container to be running and healthy again, with a deadline."""
        result = self.compose(
            "up", "-d", "--wait", "--no-deps", *args, *self.services, check=False, env=env
        )
        if result.returncode != 0:
            wait_until(self.healthy, 180, "every HA container healthy", interval=1)

    def healthy(self) -> bool:
        for service in self.services:
            rows = self.containers(service)
            if not rows or any(row.get("Health") not in ("", "healthy") for row in rows):
                return False
        return True

    @property
    def network(self) -> str:
        return f"{self.project}_backend"

    def container(self, service: str) -> str:
        return self.containers(service)[0]["ID"]

    def ip(self, container: str) -> str | None:
        out = run("docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", container)
        address: str | None = (json.loads(out.stdout).get(self.network) or {}).get("IPAddress")
        return address or None

    def cli(self, service: str, *args: str, port: int = 6379) -> str:
        """redis-cli in a running container of `service`, as the sentinel user."""
        command = (
            'REDISCLI_AUTH="$(cat /run/secrets/redis_sentinel_password)" '
            f"redis-cli -p {port} --user sentinel --no-auth-warning " + " ".join(args)
        )
        result = self.compose("exec", "-T", service, "sh", "-c", command, check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    def primary_ip(self) -> str | None:
        """The primary's address as the first running Sentinel names it."""
        for sentinel in SENTINELS:
            if self.containers(sentinel):
                answer = self.cli(
                    sentinel, "sentinel", "get-master-addr-by-name", SERVICE, port=26379
                )
                return answer.splitlines()[0] if answer else None
        return None

    def primary(self) -> str:
        """The service name of the node the Sentinels name as the primary."""
        address = self.primary_ip()
        for node in NODES:
            if self.containers(node) and self.ip(self.container(node)) == address:
                return node
        raise AssertionError(f"no running node has the primary's address {address}")

    def role(self, node: str) -> str:
        for line in self.cli(node, "info", "replication").splitlines():
            if line.startswith("role:"):
                return line.split(":", 1)[1]
        return ""

    def settled(self) -> bool:
        """Every node and Sentinel up; the primary has both replicas online and every
        Sentinel agrees on it with a quorum."""
        if not all(self.containers(name) for name in (*NODES, *SENTINELS)):
            return False
        info = self.cli(self.primary(), "info", "replication")
        if "min_slaves_good_slaves:2" not in info:
            return False
        return all(
            self.cli(s, "sentinel", "ckquorum", SERVICE, port=26379).startswith("OK")
            for s in SENTINELS
        )
