"""What ops/deploy.py and ops/rotate_secrets.py take from elsewhere agrees with its source."""

from __future__ import annotations

import re

import yaml

from ops import deploy, rotate_secrets
from tests.faults.operations import USERS
from tests.support import ROOT


def test_the_deploy_finds_the_one_upstream_server_line_it_pins_in_the_template() -> None:
    template = (ROOT / "ops" / "nginx" / "templates" / "tally.conf.template").read_text()
    [server] = deploy.RESOLVED.findall(template)
    assert server[1:3] == ("app", "8000")
    assert deploy.RELOAD.exists()


def test_the_rotation_covers_every_redis_user_the_secrets_service_makes() -> None:
    init = (ROOT / "ops" / "secrets" / "init.sh").read_text()
    made = set(re.findall(r"^make_password (redis_\w+_password)$", init, re.MULTILINE))
    [rotated] = re.findall(r'^ROTATED="([^"]+)"$', init, re.MULTILINE)
    assert set(rotated.split()) == made == set(USERS.values())
    users = set(
        re.findall(r"^  echo \"user (\w+) on \$\(hashes redis_(\w+)_password\)", init, re.M)
    )
    assert {user for user, _ in users} == set(USERS)
    assert all(user == secret for user, secret in users)


def test_the_rotation_names_the_nodes_and_sentinels_of_the_ha_topology() -> None:
    services = yaml.safe_load((ROOT / "compose.ha.yaml").read_text())["services"]
    assert set(rotate_secrets.NODES) == {"redis"} | {
        s for s in services if s.startswith("redis-") and "exporter" not in s
    }
    assert set(rotate_secrets.SENTINELS) == {s for s in services if s.startswith("sentinel-")}
    assert (
        rotate_secrets.EXPORTER
        in yaml.safe_load((ROOT / "compose.observability.yaml").read_text())["services"]
    )
