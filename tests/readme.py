"""The commands README.md shows, as a reader would copy them, and the output it shows."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from tests.support import ROOT

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
# Inline code that is a command: optional VAR=value words, then a program we ship for.
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+ )*(?:docker|make|curl)\b")


@dataclass(frozen=True)
class Shown:
    command: str
    output: str  # what the README prints under it in a console block ("" when nothing)

    @property
    def words(self) -> list[str]:
        """The command's words after its VAR=value prefix, up to a pipe."""
        words = shlex.split(self.command.split(" | ")[0])
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words.pop(0)
        return words

    @property
    def env(self) -> dict[str, str]:
        """Its VAR=value prefix."""
        prefix = re.match(r"^((?:[A-Z_]+=\S+ )*)", self.command)
        return dict(word.split("=", 1) for word in (prefix.group(1) if prefix else "").split())


def shown_commands() -> list[Shown]:
    """Each `$ ` line of the console blocks with the lines under it, then each inline
    command of the prose, its line breaks joined, in the README's order and once each."""
    readme = (ROOT / "README.md").read_text()
    shown: dict[str, Shown] = {}
    for block in FENCE.findall(readme):
        for part in re.split(r"^\$ ", block, flags=re.MULTILINE)[1:]:
            command, _, output = part.partition("\n")
            shown.setdefault(command, Shown(command, output.strip()))
    for span in re.findall(r"`([^`]+)`", FENCE.sub("", readme)):
        command = " ".join(span.split())
        if COMMAND.match(command):
            shown.setdefault(command, Shown(command, ""))
    return list(shown.values())


def commands_of(program: str, *subcommand: str) -> list[Shown]:
    """The shown commands that run `program` (and `subcommand`, when given)."""
    prefix = [program, *subcommand]
    return [shown for shown in shown_commands() if shown.words[: len(prefix)] == prefix]


def compose_parts(words: list[str]) -> tuple[list[str], str, list[str]]:
    """(global options, subcommand, its arguments) of the words of a `docker compose` command."""
    index, global_options = 2, []
    while index < len(words) and words[index].startswith("-"):
        global_options += words[index : index + 2]  # each the README uses takes a value
        index += 2
    return global_options, words[index], words[index + 1 :]
