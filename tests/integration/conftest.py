"""Integration fixtures: a real Redis in Docker, shared by the tier, and app processes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.support import AppProcess, RedisContainer, redis_container


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisContainer]:
    with redis_container() as redis:
        yield redis


@pytest.fixture
def counter_key() -> str:
    """A key of its own per test, so tests sharing one Redis never see each other's counts."""
    return f"test:{uuid.uuid4().hex}"


@pytest.fixture
def start_app() -> Iterator[Callable[..., AppProcess]]:
    started: list[AppProcess] = []

    def start(**env: str) -> AppProcess:
        app = AppProcess(env)
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()
