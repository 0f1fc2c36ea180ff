"""The CLI's surface: help with an example everywhere, --version, shell completion from the
views, and commands that import only what they need."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main

from commands.main import app, app_for


def all_commands() -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []

    def walk(group: Any, prefix: str) -> None:
        for name, cmd in sorted(group.commands.items()):
            if getattr(cmd, "commands", None):
                walk(cmd, f"{prefix} {name}")
            else:
                found.append((f"{prefix} {name}".strip(), cmd))

    walk(typer.main.get_command(app), "")
    return found


def test_every_command_has_help_with_an_example() -> None:
    commands = all_commands()
    assert {"dashboard", "tmux install", "tmux snippet", "tmux uninstall", "get"} <= {
        name for name, _ in commands
    }
    for name, cmd in commands:
        examples = [
            line.strip()
            for line in (cmd.help or "").splitlines()
            if line.strip().startswith(("Example:", "Examples:"))
        ]
        assert examples, f"`secrets {name}` has no Example: line in its help"
        assert f"secrets {name}" in examples[0], (name, examples[0])


# Parsing cases, valid and not, for every kind of parameter the fast coercion takes (str, int,
# bounded int and float, enum, path) and some it leaves to typer (leading zeros, spaces, ...).
COERCION_CASES = [
    ["get", "--service", "nexus", "--name", "k", "--version", "3"],
    ["get", "--service", "nexus", "--name", "k", "--version", "-1"],
    ["get", "--service", "nexus", "--name", "k", "--version", "007"],
    ["get", "--service", "nexus", "--name", "k", "--version", " 4"],
    ["get", "--service", "nexus", "--name", "k", "--version", "x"],
    ["get", "--service", "nexus", "--name", "k", "--version", "1.5"],
    ["list", "-o", "json"],
    ["list", "-o", "JSON"],
    ["list", "-o", "xml"],
    ["list", "--home", ""],
    ["versions", "--service", "nexus", "--name", "k", "--home", "/nonexistent/home"],
    ["versions", "--service", "nexus", "--name", "k", "-e", "production"],
    ["init", "--retention", "x", "--operator", "alice"],
    ["audit", "log", "--limit", "0"],
    ["audit", "log", "--limit", "2"],
    ["audit", "log", "--interval", "0.01"],
    ["audit", "log", "--interval", "0.5", "-o", "csv"],
    ["audit", "log", "-o", "yaml"],
    ["dashboard", "--watch", "0"],
    ["--log-file", "", "list"],
]


def _outcome(args: list[str], home: str) -> tuple[Any, ...]:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, args, env={"SECRETS_LEDGER_HOME": home})
    return (result.exit_code, result.stdout, result.stderr, type(result.exception).__name__)


@pytest.mark.parametrize("args", COERCION_CASES, ids=" ".join)
def test_fast_coercion_agrees_with_typer(
    args: list[str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from commands import fastparams

    home = str(tmp_path / "no-ledger")  # every command stops at "not initialised", if it runs
    fast = _outcome(args, home)
    monkeypatch.setattr(fastparams, "install", lambda command: 0)
    assert _outcome(args, home) == fast


def test_fast_coercion_is_active_on_this_typer() -> None:
    from commands import fastparams

    command = typer.main.get_command(app)
    assert fastparams.install(command) > 100
    versions = command.commands["versions"]  # type: ignore[attr-defined]
    assert all(isinstance(p._runtime_param, fastparams.FastParam) for p in versions.params)


RAW_VALUES = ["3", "-1", "0", "007", "1.5", "0.5", "-0", "x", "", "json", "JSON", "csv", "/tmp/x"]


def _coerced(runtime: Any, value: Any, param: Any, ctx: Any) -> tuple[str, Any]:
    try:
        result = runtime.coerce(value, param=param, ctx=ctx)
    except Exception as exc:  # the error typer reports, compared by type and text
        return ("error", (type(exc).__name__, str(exc)))
    return (type(result).__name__, result)


def test_fast_coercion_gives_typers_values_for_every_parameter() -> None:
    from typer._coercion import build_runtime_param

    from commands import fastparams

    command = typer.main.get_command(app)
    fastparams.install(command)
    checked = 0

    def walk(cmd: Any) -> None:
        nonlocal checked
        ctx = typer.Context(cmd)
        for param in cmd.params:
            if not isinstance(param._runtime_param, fastparams.FastParam):
                continue
            typers = build_runtime_param(param.type_descriptor)
            for value in [*RAW_VALUES, param.default]:
                fast = _coerced(param._runtime_param, value, param, ctx)
                assert fast == _coerced(typers, value, param, ctx), (cmd.name, param.name, value)
                checked += 1
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(command)
    assert checked > 1000


def _helps(root: Any, words: list[str]) -> dict[str, tuple[int, str]]:
    """`secrets <words...> --help` for the command at `words` and everything under it."""
    from typer.testing import CliRunner

    command = typer.main.get_command(root)
    for word in words:
        command = command.commands[word]  # type: ignore[attr-defined]
    found = {}
    paths = [words] + [[*words, sub] for sub in sorted(getattr(command, "commands", {}))]
    for path in paths:
        result = CliRunner().invoke(root, [*path, "--help"], prog_name="secrets")
        found[" ".join(path)] = (result.exit_code, result.stdout)
    return found


def test_a_command_line_builds_only_its_command_and_it_behaves_the_same() -> None:
    from commands.main import PART_OF

    whole = typer.main.get_command(app)
    top = set(whole.commands)  # type: ignore[attr-defined]
    # Every top-level command is in the table, except the dashboard (it lists all commands).
    assert set(PART_OF) == top - {"dashboard"}
    for word in sorted(PART_OF):
        part = app_for([word, "--help"])
        built = set(typer.main.get_command(part).commands)  # type: ignore[attr-defined]
        assert built == {word}, (word, built)  # its command alone, not its part's others
        assert _helps(part, [word]) == _helps(app, [word]), word
    # Options first, typos and completion get the whole CLI.
    for args in (["--log-file", "x", "get"], ["gte"], ["dashboard"]):
        built = set(typer.main.get_command(app_for(args)).commands)  # type: ignore[attr-defined]
        assert built == top, args


@pytest.mark.parametrize(
    "args",
    [[], ["--help"], ["--help", "gte"], ["--help", "--bogus"], ["--help", "audit", "log"]],
    ids=lambda a: " ".join(a) or "no args",
)
def test_the_root_help_lists_the_groups_without_converting_their_commands(
    args: list[str],
) -> None:
    from typer.testing import CliRunner

    from commands.main import full_app

    listing = app_for(args)
    whole = typer.main.get_command(full_app())
    listed = typer.main.get_command(listing)
    assert set(listed.commands) == set(whole.commands)  # type: ignore[attr-defined]
    groups = [n for n, c in whole.commands.items() if getattr(c, "commands", None)]  # type: ignore[attr-defined]
    assert len(groups) >= 8
    assert all(not listed.commands[n].commands for n in groups)  # type: ignore[attr-defined]
    # The same output, exit code and errors as the whole CLI.
    listed_run, whole_run = (
        CliRunner().invoke(root, args, prog_name="secrets") for root in (listing, full_app())
    )
    assert (listed_run.exit_code, listed_run.stdout, listed_run.stderr) == (
        whole_run.exit_code,
        whole_run.stdout,
        whole_run.stderr,
    )
    assert "Commands" in listed_run.stdout or "No such option" in listed_run.stderr


# -- commands/typerfast.py: typer's conversion and help drawing, same results, less work ------


def _click_params(command: Any) -> dict[str, list[tuple[Any, ...]]]:
    """What typer made of every parameter of every command, by command path."""
    found: dict[str, list[tuple[Any, ...]]] = {}

    def walk(cmd: Any, path: str) -> None:
        found[path] = [
            (
                type(p).__name__,
                p.name,
                tuple(p.opts),
                tuple(p.secondary_opts),
                repr(p.default),
                p.required,
                repr(getattr(p, "type", None)),
                p.nargs,
                p.multiple,
                p.envvar,
                getattr(p, "help", None),
                getattr(p, "is_flag", None),
                getattr(p, "show_default", None),
                p.hidden if hasattr(p, "hidden") else None,
                p.callback is not None,
                getattr(p, "_custom_shell_complete", None) is not None,
                repr(getattr(p, "type_descriptor", None) and p.type_descriptor.annotation),
            )
            for p in cmd.params
        ]
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(sub, f"{path} {name}")

    walk(command, "secrets")
    return found


def test_typer_inspects_each_function_once_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from commands import typerfast

    assert typerfast.install()  # active on the installed typer
    once = typer.main.get_params_from_function  # type: ignore[attr-defined]
    assert getattr(once, "inspects_once", False)
    converted = _click_params(typer.main.get_command(app))
    # typer's own function, evaluating every annotation on each call
    monkeypatch.setattr(
        typer.main, "get_params_from_function", typer.utils.get_params_from_function
    )
    assert _click_params(typer.main.get_command(app)) == converted
    assert sum(len(params) for params in converted.values()) > 150
    # Each call returns its own ParamMeta and OptionInfo objects, as typer's function does.
    from commands.secrets_cmds import get

    first, second = once(get), once(get)
    assert first.keys() == second.keys()
    assert all(first[n] is not second[n] for n in first)
    assert all(first[n].default is not second[n].default for n in first)


def test_the_rich_stand_ins_hand_over_to_the_real_classes() -> None:
    from rich.markdown import Markdown
    from rich.traceback import Traceback

    from commands.typerfast import _Deferred

    stand_in = _Deferred("Markdown", (), {"_source": "rich.markdown"})
    made = stand_in("*hi*", style="bold")
    assert type(made) is Markdown and made.markup == "*hi*"
    assert isinstance(made, stand_in) and issubclass(Markdown, stand_in)
    assert stand_in.elements is Markdown.elements  # class attributes too
    traceback = _Deferred("Traceback", (), {"_source": "rich.traceback"})
    assert traceback.from_exception == Traceback.from_exception
