"""Alertmanager in its pinned image: the shipped config, the config render.sh writes from
secret files, the routing of every alert (amtool), and the inhibitions on a live one."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT, run, wait_until

ALERTMANAGER_DIR = ROOT / "ops" / "alertmanager"
RULES_DIR = ROOT / "ops" / "prometheus" / "rules"
IMAGE = "prom/alertmanager:v0.33.1"
SHIPPED = "/etc/alertmanager/alertmanager.yml"
RENDERED = "/tmp/alertmanager.yml"


def alerting_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in sorted(RULES_DIR.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def amtool(*args: str) -> str:
    result = run(
        "docker", "run", "--rm", "-v", f"{ALERTMANAGER_DIR}:/etc/alertmanager:ro",
        "--entrypoint", "/bin/amtool", IMAGE, *args,
    )  # fmt: skip
    return result.stdout + result.stderr


def render(secrets: dict[str, str], tmp_path: Path, **env: str) -> tuple[int, str]:
    """Run render.sh up to its exec with these secret files; return its exit code and
    its log, and the config it wrote checked by amtool."""
    tmp_path.chmod(0o755)  # Alertmanager runs as nobody
    for name, value in secrets.items():
        (tmp_path / name).write_text(value)
        (tmp_path / name).chmod(0o644)
    script = (
        'sed \'s#^exec .*#/bin/amtool check-config "$CONFIG" \\&\\& cat "$CONFIG"#\''
        " /etc/alertmanager/render.sh > /tmp/render.sh && sh /tmp/render.sh"
    )
    flags = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
    result = run(
        "docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", *flags,
        "-v", f"{ALERTMANAGER_DIR}:/etc/alertmanager:ro", "-v", f"{tmp_path}:/run/secrets:ro",
        "--entrypoint", "/bin/sh", IMAGE, "-c", script, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def test_shipped_config_is_valid() -> None:
    assert "SUCCESS" in amtool("check-config", SHIPPED)


def test_without_secrets_every_receiver_sends_nothing(tmp_path: Path) -> None:
    code, out = render({}, tmp_path)
    assert code == 0, out
    assert "SUCCESS" in out
    assert "no receiver configured" in out
    config = yaml.safe_load(out[out.index("route:") :])
    assert [set(receiver) for receiver in config["receivers"]] == [{"name"}, {"name"}]


def test_each_secret_file_switches_its_integration_on_for_every_receiver(tmp_path: Path) -> None:
    secrets = {
        "alertmanager_webhook_url": "http://receiver.example:9000/\n",
        "alertmanager_slack_api_url": "https://hooks.slack.example/services/T/B/x\n",
        "alertmanager_smtp_password": "not-a-real-password\n",
    }
    code, out = render(
        secrets, tmp_path, ALERTMANAGER_EMAIL_TO="ops@example.org",
        ALERTMANAGER_SMTP_SMARTHOST="smtp.example.org:587",
    )  # fmt: skip
    assert code == 0, out
    assert "SUCCESS" in out
    config = yaml.safe_load(out[out.index("route:") :])
    for receiver in config["receivers"]:
        assert receiver["webhook_configs"][0]["url_file"] == "/run/secrets/alertmanager_webhook_url"
        slack = receiver["slack_configs"][0]
        assert slack["api_url_file"] == "/run/secrets/alertmanager_slack_api_url"
        email = receiver["email_configs"][0]
        assert email["auth_password_file"] == "/run/secrets/alertmanager_smtp_password"
        assert email["to"] == "ops@example.org"
        assert all(c["send_resolved"] for c in (receiver["webhook_configs"][0], slack, email))
    # The secrets' values never enter the config: Alertmanager reads the files.
    assert not any(value.strip() in out for value in secrets.values())


# Empty on compose; a newline on Swarm, whose secrets cannot be empty (ops/swarm/secrets.py).
@pytest.mark.parametrize("content", ["", "\n", " \n\n"])
def test_an_empty_secret_file_is_off(content: str, tmp_path: Path) -> None:
    code, out = render({"alertmanager_webhook_url": content}, tmp_path)
    assert code == 0, out
    assert "webhook on" not in out


def test_email_without_an_address_stops_alertmanager_naming_the_variable(tmp_path: Path) -> None:
    code, out = render({"alertmanager_smtp_password": "x"}, tmp_path)
    assert code == 78
    assert "ALERTMANAGER_EMAIL_TO must be set" in out


def test_every_alert_routes_to_the_receiver_named_by_its_severity() -> None:
    cases = []
    for rule in alerting_rules():
        labels = {"alertname": rule["alert"], "job": "tally", **rule["labels"]}
        severity = labels["severity"]
        assert severity in ("page", "ticket"), rule["alert"]
        pairs = " ".join(f"{name}={value}" for name, value in labels.items())
        cases.append(
            f"/bin/amtool config routes test --config.file={SHIPPED}"
            f" --verify.receivers={severity} {pairs} || echo 'MISROUTED: {pairs}'"
        )
    result = run(
        "docker", "run", "--rm", "-v", f"{ALERTMANAGER_DIR}:/etc/alertmanager:ro",
        "--entrypoint", "/bin/sh", IMAGE, "-c", "\n".join(cases),
    )  # fmt: skip
    assert "MISROUTED" not in result.stdout, result.stdout
    assert len(cases) >= 10


@pytest.fixture(scope="module")
def alertmanager() -> Iterator[str]:
    """A real Alertmanager with the shipped config, for amtool to post alerts to."""
    name = f"tally-test-alertmanager-{uuid.uuid4().hex[:8]}"
    run(
        "docker", "run", "-d", "--name", name, "--read-only", "--tmpfs", "/alertmanager",
        "-v", f"{ALERTMANAGER_DIR}:/etc/alertmanager:ro", IMAGE,
        f"--config.file={SHIPPED}", "--storage.path=/alertmanager", "--cluster.listen-address=",
    )  # fmt: skip
    try:
        wait_until(lambda: api(name, "/-/ready") is not None, 60, "alertmanager ready")
        yield name
    finally:
        run("docker", "rm", "-f", name, check=False)


def api(name: str, path: str) -> Any:
    out = run(
        "docker", "exec", name, "wget", "-q", "-O", "-", f"http://127.0.0.1:9093{path}",
        check=False,
    )  # fmt: skip
    if out.returncode != 0:
        return None
    return json.loads(out.stdout) if path.startswith("/api") else out.stdout


def post(name: str, **labels: str) -> None:
    pairs = [f"{key}={value}" for key, value in labels.items()]
    run("docker", "exec", name, "/bin/amtool", "--alertmanager.url=http://127.0.0.1:9093",
        "alert", "add", *pairs)  # fmt: skip


def inhibited(name: str, alertname: str) -> dict[str, bool]:
    """Each alert of that name, by its labels, and whether it is inhibited."""
    alerts = api(name, "/api/v2/alerts") or []
    return {
        ",".join(f"{k}={v}" for k, v in sorted(a["labels"].items())): bool(
            a["status"]["inhibitedBy"]
        )
        for a in alerts
        if a["labels"]["alertname"] == alertname
    }


def test_all_replicas_down_inhibits_the_per_replica_alerts(alertmanager: str) -> None:
    post(alertmanager, alertname="TallyReplicaDown", job="tally", replica="r1", severity="ticket")
    wait_until(lambda: inhibited(alertmanager, "TallyReplicaDown"), 30, "the alert received")
    assert not any(inhibited(alertmanager, "TallyReplicaDown").values())
    post(alertmanager, alertname="TallyAllReplicasDown", job="tally", severity="page")
    wait_until(lambda: all(inhibited(alertmanager, "TallyReplicaDown").values()), 30, "inhibited")


def test_redis_down_inhibits_the_slo_tickets_not_the_pages(alertmanager: str) -> None:
    burn = {"alertname": "TallyAvailabilityBudgetBurn", "job": "tally", "slo": "availability"}
    post(alertmanager, **burn, severity="ticket", window="1d")
    post(alertmanager, **burn, severity="page", window="1h")
    post(alertmanager, alertname="TallyRedisDown", job="redis", severity="page")

    def states() -> dict[str, bool]:
        found = inhibited(alertmanager, "TallyAvailabilityBudgetBurn")
        return {key.split("severity=")[1].split(",")[0]: value for key, value in found.items()}

    wait_until(lambda: states().get("ticket"), 30, "the availability ticket inhibited")
    assert states() == {"ticket": True, "page": False}
