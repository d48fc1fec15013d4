"""Shared by the tiers: each test marked with its tier, and the session's compose stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compose_stack import Stack

TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, the folder it lives in (`make test-fast` runs
    tests/unit and tests/static, which need no Docker); --strict-markers fails on a folder
    pyproject.toml does not declare."""
    for item in items:
        item.add_marker(item.path.relative_to(TESTS).parts[0])


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with Stack() as stack:
        yield stack
