"""Fixtures of the stack tier."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.compose_stack import Stack
from tests.results import record_table
from tests.stack.operations import HEADER, OPERATIONS, TITLE


@pytest.fixture
def traffic(stack: Stack) -> Iterator[None]:
    """A steady trickle of /count through nginx while the test runs (bounded by the test)."""
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.wait(0.02):
                client.get(f"{stack.url}/count")
                client.get(f"{stack.url}/")

    sender = threading.Thread(target=send)
    sender.start()
    yield
    stop.set()
    sender.join()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    record_table(TITLE, HEADER, [row.cells() for row in OPERATIONS], terminal=terminalreporter)
