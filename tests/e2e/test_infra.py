"""The service fixtures in tests/conftest.py start real, working services."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

# --------------------------------------------------------------------------- Secret Service


# --------------------------------------------------------------------------- PostgreSQL


# --------------------------------------------------------------------------- tmux, promtool


# --------------------------------------------------------------------------- the CLI runner


def test_cli_runs_the_real_console_script(
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    with pytest.raises(subprocess.CalledProcessError):
        cli("no-such-command", check=True)
    assert cli("no-such-command").returncode != 0


# --------------------------------------------------------------------------- failure messages
