"""`vitalstream --version` prints the installed package's version (its metadata, not a
constant that could drift from pyproject.toml)."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from vitalstream.cli import main


def test_version_is_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"vitalstream {version('vitalstream')}"
