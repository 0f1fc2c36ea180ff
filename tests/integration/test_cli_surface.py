"""The CLI's surface: help with an example everywhere, --version, shell completion from the
views, and commands that import only what they need."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.clikit import REPO


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A Python process of this checkout, its output captured as text."""
    return subprocess.run(
        argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


# -- commands/typerfast.py: typer's conversion and help drawing, same results, less work ------


HELP_PROBE = """
import sys
if sys.argv[1] == "plain":
    import typer.rich_utils  # the real Markdown and Traceback, imported the usual way
from commands.main import run
sys.argv = ["secrets", *sys.argv[2:]]
try:
    run()
finally:
    print("rich.markdown" in sys.modules, "markdown_it" in sys.modules, file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [["--help"], ["get", "--help"], ["audit"], ["audit", "log", "--help"], ["rotate", "--help"]],
    ids=" ".join,
)
def test_help_is_drawn_the_same_without_rich_markdown(args: list[str]) -> None:
    """Colours forced: the same escape sequences too, byte for byte."""
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "100", "PYTHONPATH": str(REPO)}
    done = {
        how: _run([sys.executable, "-c", HELP_PROBE, how, *args], env)
        for how in ("plain", "deferred")
    }
    plain, deferred = done["plain"], done["deferred"]
    assert "\x1b[" in deferred.stdout and "Usage" in deferred.stdout + deferred.stderr
    assert (deferred.returncode, deferred.stdout) == (plain.returncode, plain.stdout)
    assert plain.stderr.splitlines()[-1] == "True True"
    assert deferred.stderr.splitlines()[-1] == "False False"
    assert deferred.stderr.splitlines()[:-1] == plain.stderr.splitlines()[:-1]
