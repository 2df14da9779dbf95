"""`parkmate --version` names the version pyproject.toml gives."""

import tomllib
from pathlib import Path

from click.testing import CliRunner

from services.cli import main


def test_version_option_prints_the_projects_version():
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"parkmate, version {pyproject['project']['version']}\n"
