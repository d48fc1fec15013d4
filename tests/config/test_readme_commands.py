"""The README's docker commands resolve as written: each one's options exist and its compose
project (profiles, variables) is valid. The stack, load and integration tiers run the ones
that can run here; tests/static checks the make commands."""

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


@pytest.mark.parametrize("shown", COMPOSE, ids=lambda shown: shown.command)
def test_each_docker_compose_command_is_valid_as_written(shown: Shown) -> None:
    global_options, subcommand, arguments = compose_parts(shown.words)
    run("docker", "compose", *global_options, "config", "--quiet", env={**os.environ, **shown.env})
    assert_options_exist(arguments, run("docker", "compose", subcommand, "--help").stdout)


@pytest.mark.parametrize("shown", commands_of("docker", "run"), ids=lambda shown: shown.command)
def test_each_docker_command_has_the_options_it_shows(shown: Shown) -> None:
    assert_options_exist(shown.words[2:], run("docker", shown.words[1], "--help").stdout)
