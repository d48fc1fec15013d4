"""Writes the README's settings table and `.env.example` from the declarations: `make docs`.

The app's settings are declared once, in service/settings.py; the variables compose
itself reads (ports, nginx limits, ...) once, here. The README table and
.env.example are this script's output, and tests/static/test_configuration.py fails
when they drift or when compose.yaml uses a variable with another default.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service import __version__  # noqa: E402
from service.settings import Spec, specs  # noqa: E402

README = ROOT / "README.md"
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE = ROOT / "compose.yaml"
NGINX_TEMPLATE = ROOT / "ops" / "nginx" / "templates" / "tally.conf.template"
TABLE_START = "<!-- settings-table: written by `make docs` (ops/configuration.py) -->"
TABLE_END = "<!-- /settings-table -->"
# ${VAR}, ${VAR:-default} or ${VAR-default} in a compose file.
INTERPOLATION = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::?-([^}]*))?\}")


@dataclass(frozen=True)
class ComposeVariable:
    name: str
    default: str
    help: str


COMPOSE_VARIABLES = (
    ComposeVariable("HTTP_PORT", "8080", "host port nginx listens on"),
    ComposeVariable(
        "NGINX_RATE_LIMIT",
        "100r/s",
        "nginx's per-client rate limit (429 beyond); raise it for load tests from one address",
    ),
    ComposeVariable("NGINX_RATE_BURST", "200", "requests a client may burst above the limit"),
    ComposeVariable(
        "REDIS_APPENDFSYNC",
        "everysec",
        "Redis's AOF fsync policy: `everysec` (a crash may lose ~1 s of writes) or `always`",
    ),
    ComposeVariable("TALLY_IMAGE", "tally-app", "the app image's name (a registry path to push)"),
    ComposeVariable("TALLY_VERSION", __version__, "the app image's tag (service/__init__.py)"),
    ComposeVariable("PROMETHEUS_PORT", "9090", "Prometheus's UI on the host's loopback"),
    ComposeVariable("GRAFANA_PORT", "3000", "Grafana's UI on the host's loopback"),
    ComposeVariable(
        "PROMETHEUS_RETENTION",
        "31d",
        "how long Prometheus keeps samples (the SLOs' 30 days and one)",
    ),
    ComposeVariable("ALERTMANAGER_PORT", "9093", "Alertmanager's UI on the host's loopback"),
    ComposeVariable(
        "ALERTMANAGER_EMAIL_TO", "", "where alert email goes (with the SMTP password's secret)"
    ),
    ComposeVariable("ALERTMANAGER_EMAIL_FROM", "", "alert email's sender; unset: the `to` address"),
    ComposeVariable("ALERTMANAGER_SMTP_SMARTHOST", "", "the SMTP server as `host:port`"),
    ComposeVariable("ALERTMANAGER_SMTP_USERNAME", "", "the SMTP login; unset: the `to` address"),
    ComposeVariable(
        "BACKUP_DIR",
        "./backups",
        "the host folder `make backup` and the backup service write snapshots into",
    ),
    ComposeVariable(
        "BACKUP_INTERVAL",
        "1h",
        "the backup service's period: `90s`, `30m`, `6h`, `1d` (the stale-backup alert: 2x)",
    ),
    ComposeVariable("BACKUP_KEEP", "48", "how many backups the backup service keeps"),
    ComposeVariable("LOCUST_PORT", "8089", "Locust's UI on the host's loopback"),
    ComposeVariable("LOCUST_HEADLESS", "false", "`true`: run without the UI and exit"),
    ComposeVariable("LOCUST_USERS", "50", "simulated users"),
    ComposeVariable("LOCUST_SPAWN_RATE", "10", "users started per second"),
    ComposeVariable("LOCUST_RUN_TIME", "1m", "how long a headless run lasts"),
    ComposeVariable("TALLY_REPLICAS", "3", "replicas the load test expects to see serving"),
)


def app_image(env: Mapping[str, str]) -> str:
    """The app image compose builds and runs: `${TALLY_IMAGE}:${TALLY_VERSION}`, defaulted."""
    defaults = {v.name: v.default for v in COMPOSE_VARIABLES}
    name = env.get("TALLY_IMAGE") or defaults["TALLY_IMAGE"]
    return f"{name}:{env.get('TALLY_VERSION') or defaults['TALLY_VERSION']}"


# App settings whose stack value is a deliberate choice of compose's, not the default.
STACK_CHOICES = {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"}


def app_environment() -> dict[str, str]:
    """The app service's environment in compose.yaml, as written."""
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    environment: dict[str, Any] = compose["services"]["app"]["environment"]
    return {name: str(value) for name, value in environment.items()}


def stack_value(spec: Spec, environment: dict[str, str]) -> str:
    """What the compose stack gives the app for a setting, for the README."""
    raw = environment.get(spec.env) or environment.get(f"{spec.env}_FILE")
    if raw is None:
        return "the default"
    if spec.secret and f"{spec.env}_FILE" in environment:
        return f"`{spec.env}_FILE={raw}`"
    passed = INTERPOLATION.fullmatch(raw)
    if passed and passed.group(1) == spec.env:
        return f"`{passed.group(2)}`" if passed.group(2) else "the default"
    return f"`{raw}`"


def readme_table() -> str:
    environment = app_environment()
    rows = [
        TABLE_START,
        "| variable | default | in the stack | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for _, spec in specs():
        name = f"`{spec.env}`" + (f", `{spec.env}_FILE`" if spec.secret else "")
        default = f"`{spec.shown_default}`" if spec.shown_default else "none"
        if spec.shown_default == "the hostname":
            default = spec.shown_default
        rows.append(f"| {name} | {default} | {stack_value(spec, environment)} | {spec.help} |")
    rows += [
        "",
        "Compose itself reads these (compose.yaml, compose.observability.yaml):",
        "",
        "| variable | default | meaning |",
        "| --- | --- | --- |",
    ]
    rows += [
        f"| `{v.name}` | {f'`{v.default}`' if v.default else 'none'} | {v.help} |"
        for v in COMPOSE_VARIABLES
    ]
    rows.append(TABLE_END)
    return "\n".join(rows)


def env_example() -> str:
    lines = [
        "# tally's configuration with its defaults, written by `make docs` from the",
        "# declarations (ops/configuration.py, service/settings.py). Copy to .env to change a",
        "# value for `docker compose`; the app reads the same names when run by hand.",
        "",
        "# --- compose ---",
    ]
    for variable in COMPOSE_VARIABLES:
        lines += [f"# {_plain(variable.help)}", f"{variable.name}={variable.default}"]
    lines += [
        "",
        "# --- the app (service/settings.py) ---",
        "# Commented out: unset or empty means the app's default (shown), or the stack's",
        "# choice where compose.yaml makes one (README, Configuration). Uncomment to change.",
    ]
    for _, spec in specs():
        default = "" if spec.shown_default == "the hostname" else spec.shown_default
        lines += [f"# {_plain(spec.help)}", f"#{spec.env}={default}"]
        if spec.secret:
            lines += [f"#{spec.env}_FILE="]
    return "\n".join(lines) + "\n"


def _plain(help_text: str) -> str:
    return help_text.replace("`", "")


def readme_with_table(readme: str) -> str:
    start = readme.index("<!-- settings-table")
    end = readme.index(TABLE_END) + len(TABLE_END)
    return readme[:start] + readme_table() + readme[end:]


def main() -> None:
    README.write_text(readme_with_table(README.read_text()))
    ENV_EXAMPLE.write_text(env_example())


if __name__ == "__main__":
    main()
