"""The README stays true: its settings table names exactly the variables the settings read."""

from __future__ import annotations

import re

from tests.support import ROOT


def settings_variables() -> set[str]:
    source = (ROOT / "service" / "settings.py").read_text()
    return set(re.findall(r'reader\.\w+\(\s*"([A-Z][A-Z0-9_]+)"', source))


def readme_table_variables() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- settings-table")[1].split("<!-- /settings-table -->")[0]
    return {
        name
        for row in table.splitlines()[2:]
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1] if "|" in row else "")
    }


def test_readme_settings_table_matches_the_settings_code() -> None:
    assert settings_variables()
    assert readme_table_variables() == settings_variables()


def test_env_example_lists_every_setting() -> None:
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    assert settings_variables() <= listed


def test_readme_shows_every_command_of_the_contract() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in (
        "docker compose up -d --build --wait",
        "docker compose --profile observability up -d --build --wait",
        "docker compose --profile dev up",
        "docker compose watch",
        "docker compose --profile loadtest up",
        "make load",
        "docker compose up -d --scale app=5",
        "make test",
        "docker compose down",
        "docker compose down -v",
    ):
        assert command in readme, command
