"""Unit fixtures: an app wired to a fake counter, its test client, and its log lines."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator

import pytest
from quart.typing import TestClientProtocol as Client

from service.settings import Settings
from tests.serving import json_logs, serving
from tests.unit.fakes import FakeCounter


@pytest.fixture
def fake() -> FakeCounter:
    return FakeCounter()


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """The JSON log lines of this test (and only this test)."""
    with json_logs("replica-1") as out:
        yield out


@pytest.fixture
async def client(fake: FakeCounter, stream: io.StringIO) -> AsyncIterator[Client]:
    # Logging is configured (`stream`) before the app exists, so its loggers bind to it.
    async with serving(Settings(replica_id="replica-1"), fake) as test_client:
        yield test_client
