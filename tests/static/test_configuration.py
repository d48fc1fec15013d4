"""Each setting is declared once (service/settings.py, ops/configuration.py); everything that
lists settings is written from those declarations or checked against them here."""

from __future__ import annotations

import re
import tomllib

import pytest

from ops import configuration
from service import __version__
from service.settings import specs
from tests.support import ROOT

APP_SETTINGS = {spec.env: spec for _, spec in specs()}
COMPOSE_VARIABLES = {variable.name: variable for variable in configuration.COMPOSE_VARIABLES}
COMPOSE_FILES = sorted(ROOT.glob("compose*.yaml"))


def test_the_readme_settings_tables_are_the_generated_ones() -> None:
    readme = (ROOT / "README.md").read_text()
    assert configuration.readme_with_table(readme) == readme, "run `make docs`"


def test_env_example_is_the_generated_one() -> None:
    assert (ROOT / ".env.example").read_text() == configuration.env_example(), "run `make docs`"


def interpolations() -> list[tuple[str, str, str | None]]:
    """(file, variable, default) for every ${...} in the compose files."""
    return [
        (path.name, match.group(1), match.group(2))
        for path in COMPOSE_FILES
        for match in configuration.INTERPOLATION.finditer(path.read_text())
    ]


@pytest.mark.parametrize(("file", "variable", "default"), interpolations())
def test_compose_uses_declared_variables_with_their_declared_defaults(
    file: str, variable: str, default: str | None
) -> None:
    if variable in COMPOSE_VARIABLES:
        assert default == COMPOSE_VARIABLES[variable].default, f"{file}: {variable}"
        return
    assert variable in APP_SETTINGS, f"{file}: ${{{variable}}} is declared nowhere"
    if default and variable not in configuration.STACK_CHOICES:
        # Pass settings through empty (`${X:-}`): the app applies its declared default.
        assert default == APP_SETTINGS[variable].shown_default, f"{file}: {variable}"


def test_the_app_service_sets_only_declared_settings() -> None:
    declared = set(APP_SETTINGS) | {f"{s.env}_FILE" for s in APP_SETTINGS.values() if s.secret}
    assert set(configuration.app_environment()) <= declared


def test_the_secrets_script_defaults_the_counter_key_as_the_app_does() -> None:
    init = (ROOT / "ops" / "secrets" / "init.sh").read_text()
    assert re.findall(r"\$\{COUNTER_KEY:-([^}]*)\}", init) == [
        APP_SETTINGS["COUNTER_KEY"].shown_default
    ]


def test_pyproject_and_the_image_label_carry_the_service_version() -> None:
    """service/__init__.py holds the version; uv needs pyproject.toml's and the image's
    label cannot read Python, so they are copies checked here (compose's default tag is
    checked with the other declared variables, and the files generated from it follow)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == __version__
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f'org.opencontainers.image.version="{__version__}"' in dockerfile


def test_the_makefile_defaults_the_backup_folder_as_compose_does() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.findall(r"^export BACKUP_DIR \?= (\S+)$", makefile, re.MULTILINE) == [
        COMPOSE_VARIABLES["BACKUP_DIR"].default
    ]
