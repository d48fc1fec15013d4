"""Fixtures shared by tiers: the compose stack, brought up once per session, always torn down."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.compose_stack import Stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with Stack() as stack:
        yield stack
