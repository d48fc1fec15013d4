"""The README's commands resolve as written: each make target exists, each docker command's
options exist and its compose project (profiles, variables) is valid. The stack, load and
integration tiers run the ones that can run here."""

from __future__ import annotations

import os
import re

import pytest

from tests.readme import Shown, commands_of, compose_parts
from tests.support import run


def assert_options_exist(options: list[str], help_text: str) -> None:
    for option in (word.split("=", 1)[0] for word in options if word.startswith("-")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text), option


COMPOSE = [shown for shown in commands_of("docker", "compose") if len(shown.words) > 2]


def test_the_readme_shows_commands_of_each_kind() -> None:
    assert COMPOSE
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


@pytest.mark.parametrize("shown", COMPOSE, ids=lambda shown: shown.command)
def test_each_docker_compose_command_is_valid_as_written(shown: Shown) -> None:
    global_options, subcommand, arguments = compose_parts(shown.words)
    run("docker", "compose", *global_options, "config", "--quiet", env={**os.environ, **shown.env})
    assert_options_exist(arguments, run("docker", "compose", subcommand, "--help").stdout)


@pytest.mark.parametrize("shown", commands_of("docker", "run"), ids=lambda shown: shown.command)
def test_each_docker_command_has_the_options_it_shows(shown: Shown) -> None:
    assert_options_exist(shown.words[2:], run("docker", shown.words[1], "--help").stdout)
