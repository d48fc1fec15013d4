"""Unit fixtures: an app wired to a fake counter, and its test client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import pytest
from quart.typing import TestClientProtocol as Client

from service.app import create_app
from service.counter import Counter
from service.settings import Settings
from tests.unit.fakes import FakeCounter


@pytest.fixture
def fake() -> FakeCounter:
    return FakeCounter()


@pytest.fixture
async def client(fake: FakeCounter) -> AsyncIterator[Client]:
    app = create_app(Settings(replica_id="replica-1"), lambda *_: cast(Counter, fake))
    async with app.test_app() as test_app:
        yield test_app.test_client()
