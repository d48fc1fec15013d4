"""The browser tier's own setup: Debian's Chromium, which `make test-browser` installs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Chromium's path. Installing it is the Makefile's job (`make install-browser`, run by
    `make test` and `make test-browser`), never a side effect of running tests."""
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Chromium is missing: `sudo make install-browser` installs Debian's")
    return Path(found)
