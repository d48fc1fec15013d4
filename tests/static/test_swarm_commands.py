"""The Swarm commands as the README and the Makefile show them."""

from __future__ import annotations

import re

from tests.support import ROOT


def test_make_push_names_the_image_as_compose_does() -> None:
    compose_default = re.search(r"\$\{TALLY_IMAGE:-([^}]+)\}", (ROOT / "compose.yaml").read_text())
    assert compose_default is not None
    assert f"$(REGISTRY)/{compose_default[1]}" in (ROOT / "Makefile").read_text()


def test_readme_shows_the_swarm_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in ("make swarm-up", "make swarm-down", "docker stack deploy", "make push"):
        assert command in readme, command
