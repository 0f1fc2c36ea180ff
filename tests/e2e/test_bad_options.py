"""Options no command can use: text that is not UTF-8, numbers out of range, an environment
name that breaks the rule. Each is a usage error (exit 2) or a validation failure (exit 5),
never an internal error or an empty answer (commands/inputs.py)."""

from __future__ import annotations

from typing import Any, get_args

import pytest
import typer.main

from commands.main import full_app
from tests.clikit import Ledger

NOT_UTF8 = "r\udcff"  # what Python makes of the byte 0xff in argv: subprocess sends it back
HUGE = str(10**20)


def _commands() -> list[tuple[list[str], Any]]:
    """Every command and group of the whole CLI with its words."""
    found: list[tuple[list[str], Any]] = []

    def walk(command: Any, words: list[str]) -> None:
        found.append((words, command))
        for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
            walk(sub, [*words, name])

    walk(typer.main.get_command(full_app()), [])
    return found


def _options(kind: type | None = None) -> list[tuple[list[str], str]]:
    """(command words, option flag) of every option taking a value (of `kind`, if given)."""
    found = []
    for words, command in _commands():
        for param in command.params:
            if getattr(param, "param_type_name", "") != "option" or param.is_flag:
                continue
            annotation = param.type_descriptor.annotation
            if kind is not None and kind not in (get_args(annotation) or (annotation,)):
                continue
            found.append((words, param.opts[0]))
    return found


@pytest.mark.parametrize("ledger", ["file-vault"], indirect=True)
@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["emergency-rotate", "--reason", NOT_UTF8], 2),
        (["audit", "log", "--operator", "b\udcff"], 2),
        (["audit", "log", "--limit", HUGE], 2),
        (["get", "--service", "nexus", "--name", "k", "--version", HUGE], 2),
        (["get", "--service", "nexus", "--name", "k", "--version", "-" + HUGE], 2),
        (["dashboard", "--watch", "1e400"], 2),
        (["dashboard", "--watch", "1e300"], 2),
        (["audit", "log", "--follow", "--interval", "1e300"], 2),
        (["list", "-e", "BAD"], 5),
        (["list", "-e", "b\udcff"], 2),
        (["set", "--service", "nexus", "--name", "k", "--value-stdin", "-e", "Prod"], 5),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_the_inputs_of_issue_17(ledger: Ledger, args: list[str], code: int) -> None:
    result = ledger.run(*args, input="sk-" + "Qq7" * 16)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert "no secrets" not in result.stdout


@pytest.mark.parametrize("ledger", ["file-vault"], indirect=True)
def test_every_environment_option_refuses_an_invalid_name(ledger: Ledger) -> None:
    """`-e BAD` given first is checked before anything else the command needs."""
    paths = [words for words, cmd in _commands() if "environment" in {p.name for p in cmd.params}]
    assert {"list", "get", "set", "rotate-status", "provision", "audit log"} <= {
        " ".join(p) for p in paths
    }
    for words in paths:
        result = ledger.run(*words, "-e", "BAD")
        assert result.returncode == 5, (words, result.stdout, result.stderr)
        assert "environment 'BAD'" in result.stderr, (words, result.stderr)


def test_every_option_refuses_text_that_is_not_utf8() -> None:
    """In-process for the 170-odd options (a subprocess each would take a minute); the
    subprocess cases above show the same parse in the real CLI."""
    from typer.testing import CliRunner

    app = full_app()
    options = _options()
    assert len(options) > 100
    for words, flag in options:
        result = CliRunner().invoke(app, [*words, flag, NOT_UTF8], prog_name="secrets")
        assert result.exit_code == 2, (words, flag, result.output, result.exception)
        assert "not valid UTF-8" in result.stderr, (words, flag, result.stderr)


def test_every_integer_option_refuses_a_number_beyond_range() -> None:
    from typer.testing import CliRunner

    app = full_app()
    options = _options(int)
    assert {flag for _, flag in options} >= {"--limit", "--version", "--retention", "--position"}
    for words, flag in options:
        for number in (HUGE, "-" + HUGE):
            result = CliRunner().invoke(app, [*words, flag, number], prog_name="secrets")
            assert result.exit_code == 2, (words, flag, result.output, result.exception)
