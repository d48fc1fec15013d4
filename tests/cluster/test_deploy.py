"""The HA stack on three hosts from the README's commands: the preflight first, then
images from the registry, one Redis node and one Sentinel per host, every host answering."""

from __future__ import annotations

import httpx

from tests.cluster.cluster_stack import LABELS, REDIS, SENTINELS, ClusterStack
from tests.cluster.hosts import Cluster
from tests.support import run


def test_swarm_up_stops_before_deploying_naming_each_missing_label_and_its_command(
    cluster: Cluster,
) -> None:
    """A fresh three-node swarm, nothing labelled (runs before the stack fixture labels)."""
    stack = ClusterStack(cluster)
    output = stack.make("swarm-up", check=False)
    for label in LABELS:
        assert f"no ready node is labelled {label}=true" in output, output
        assert f"docker node update --label-add {label}=true <node>" in output, output
    assert "Creating service" not in output
    assert not stack.manager.docker("service", "ls", "-q").stdout.strip()
    stack.env.pop("REGISTRY")
    output = stack.make("swarm-preflight", check=False)
    assert "REGISTRY=host:port make push" in output, output


def test_every_host_pulled_the_app_image_from_the_registry(stack: ClusterStack) -> None:
    catalog = httpx.get(f"http://127.0.0.1:{stack.cluster.registry_port}/v2/_catalog").json()
    assert catalog["repositories"] == ["tally-app"]
    image = f"{stack.env['REGISTRY']}/tally-app"
    for host in stack.cluster.hosts:
        repositories = host.docker("images", "--format", "{{.Repository}}").stdout.split()
        assert image in repositories, host.name


def test_each_host_runs_one_redis_node_and_one_sentinel_and_the_app_is_spread(
    stack: ClusterStack,
) -> None:
    for host in stack.cluster.hosts:
        redis = [s for s in REDIS if stack.containers(host, s)]
        sentinels = [s for s in SENTINELS if stack.containers(host, s)]
        assert len(redis) == 1, (host.name, redis)
        assert len(sentinels) == 1, (host.name, sentinels)
    assert stack.app_hosts() == [host.name for host in stack.cluster.hosts]


def test_every_host_counts_through_its_own_nginx(stack: ClusterStack) -> None:
    counts = [
        httpx.get(f"{url}/count", headers={"Accept": "application/json"}).json()["count"]
        for url in stack.urls
    ]
    assert counts == [counts[0], counts[0] + 1, counts[0] + 2]


def test_the_machines_engine_ran_nothing_of_the_cluster(cluster: Cluster) -> None:
    containers = run("docker", "ps", "-a", "--format", "{{.Image}}").stdout.split()
    assert not [c for c in containers if cluster.registry in c or c == "registry:2"]
