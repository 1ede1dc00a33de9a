from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from mailtrawl import __version__
from mailtrawl.cli.main import app


def test_version_flag() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"mailtrawl {__version__}"


def test_module_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mailtrawl", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"mailtrawl {__version__}"
