"""The Dockerfile's hardening: hadolint clean, and a non-root user to run as."""

from __future__ import annotations

import re

from tests.support import ROOT, run


def test_dockerfile_is_hadolint_clean() -> None:
    result = run(str(ROOT / ".venv" / "bin" / "hadolint"), str(ROOT / "Dockerfile"), check=False)
    assert result.returncode == 0, result.stdout


def test_app_image_runs_as_a_non_root_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
