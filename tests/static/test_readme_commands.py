"""The README's make commands resolve as written: each target exists and `make --dry-run`
accepts it (tests/config checks the docker commands' options and compose projects)."""

from __future__ import annotations

import os
import re

import pytest

from tests.readme import Shown, commands_of
from tests.support import run


def test_the_readme_shows_commands_of_each_kind() -> None:
    assert commands_of("docker", "compose")
    assert commands_of("make")
    assert commands_of("curl")


def test_make_help_lists_every_target_the_readme_shows() -> None:
    listed = set(re.findall(r"^  (\S+)", run("make", "help").stdout, re.MULTILINE))
    shown = {shown.words[1] for shown in commands_of("make") if len(shown.words) > 1}
    assert shown <= listed


@pytest.mark.parametrize("shown", commands_of("make"), ids=lambda shown: shown.command)
def test_each_make_command_resolves_as_written(shown: Shown) -> None:
    # --dry-run: make prints what the target would run, and fails on a target that is not there.
    run("make", "--dry-run", *shown.words[1:], env={**os.environ, **shown.env})
