"""The browser tier's own setup: Debian's Chromium, installed only when this tier runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support import run


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Chromium's path; `make install-browser` (apt, as root) when it is missing."""
    if shutil.which("chromium") is None:
        if os.geteuid() != 0:
            pytest.fail("Chromium is missing: `sudo make install-browser` installs Debian's")
        run("make", "install-browser", timeout=1800)
    found = shutil.which("chromium")
    assert found is not None, "make install-browser did not install chromium"
    return Path(found)
