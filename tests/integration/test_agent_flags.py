"""The agent runs with its starter's isolation: `secrets agent start` from `python -I` (or
`-E`, `-s`, `-B`, `-W`) starts an agent process with the same options, or it could import
what its starter would not."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOW = (
    "import subprocess; from commands.agent.server import interpreter_flags; "
    "print([interpreter_flags(), subprocess._args_from_interpreter_flags()])"
)
# CPython's own reconstruction, used here only as the oracle the public one is checked against,
# less the options that change nothing the agent imports or trusts.
_IGNORED = {"-d", "-v", "-b", "-q"}


def _ours_and_cpythons(*options: str) -> tuple[list[str], list[str]]:
    out = subprocess.run(
        [sys.executable, *options, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {SHOW}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    ours, theirs = ast.literal_eval(out)
    kept: list[str] = []
    for i, arg in enumerate(theirs):
        if arg in _IGNORED or (arg == "-X" and theirs[i + 1] != "dev"):
            continue
        if i and theirs[i - 1] == "-X" and arg != "dev":
            continue
        kept.append(arg)
    return ours, kept


@pytest.mark.parametrize(
    "options",
    [
        (),
        ("-I",),
        ("-E", "-s"),
        ("-B", "-OO"),
        ("-W", "error::DeprecationWarning"),
        ("-X", "dev"),
        ("-X", "importtime", "-S"),
    ],
    ids=[
        "none",
        "isolated",
        "no-env-no-user-site",
        "bytecode-optimize",
        "warnings",
        "dev",
        "importtime-nosite",
    ],
)
def test_the_agent_gets_its_starters_interpreter_options(options: tuple[str, ...]) -> None:
    ours, cpythons = _ours_and_cpythons(*options)
    assert sorted(ours) == sorted(cpythons)
    for option in options:
        if option.startswith("-") and option not in ("-X", "-W"):
            assert option in ours


def test_the_agent_command_line_carries_the_flags() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            "from commands.agent.server import command_line; "
            "print(command_line(5.0, foreground=True))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    line = ast.literal_eval(out)
    assert line[0] == sys.executable and line[1] == "-I" and line[2] == "-c"
