"""The README stays true: it shows every command of the contract."""

from __future__ import annotations

from tests.support import ROOT


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
