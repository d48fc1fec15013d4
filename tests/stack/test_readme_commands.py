"""The README's commands that only read a running stack, run as written against the
session's stack (its project name and port put in through the environment), each answer
shaped like the output the README shows under it."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.compose_stack import Stack
from tests.readme import Shown, commands_of, compose_parts
from tests.support import ROOT

README_PORT = "localhost:8080"  # where the README's curl lines find nginx
READS = ("logs", "ps", "version")


def reads_the_stack(shown: Shown) -> bool:
    if shown.words[:2] == ["docker", "compose"] and len(shown.words) > 2:
        _, subcommand, arguments = compose_parts(shown.words)
        return subcommand in READS or (subcommand == "run" and "--rm" in arguments)
    return shown.words[0] == "curl" and README_PORT in shown.command


READ_ONLY = [
    shown for shown in commands_of("docker") + commands_of("curl") if reads_the_stack(shown)
]


def assert_shaped_like(output: str, shown: str) -> None:
    """JSON like the README's (at least its keys), a number for a number, else any answer."""
    last = output.strip().splitlines()[-1] if output.strip() else ""
    if shown.startswith("{"):
        assert set(json.loads(shown)) <= set(json.loads(last)), last
    elif shown.isdigit():
        assert last.isdigit(), last
    else:
        assert last, "no output"


def test_the_readme_shows_commands_that_read_the_stack() -> None:
    assert {shown.words[0] for shown in READ_ONLY} == {"docker", "curl"}


@pytest.mark.parametrize("shown", READ_ONLY, ids=lambda shown: shown.command)
def test_each_command_that_reads_the_stack_works_as_written(stack: Stack, shown: Shown) -> None:
    command = shown.command.replace(README_PORT, f"localhost:{stack.port}")
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], cwd=ROOT, capture_output=True, text=True,
        env={**stack.env, "COMPOSE_PROJECT_NAME": stack.project}, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert_shaped_like(result.stdout, shown.output)
