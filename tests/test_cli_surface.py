"""The CLI's surface: help with an example everywhere, --version, shell completion from the
views, and commands that import only what they need."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from typing import Any

import pytest
import typer.main

from commands.main import app, app_for
from tests.clikit import REPO, Ledger


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


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["get", "--nope"], "No such option: --nope"),
        (["gett"], "Did you mean 'get'"),
        (["get", "--service", "nexus"], "Missing option '--name'"),
        (["get", "--service", "nexus", "--name", "k", "--version", "x"], "--version"),
        (["audit", "replay", "--position", "1", "--at", "2026-01-01"], "exactly one of"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(args: list[str], says: str, tmp_path: Any) -> None:
    """Errors go to stderr as one clear line (issue 2), usage errors too: no framed panel."""
    home = tmp_path / "none"
    nowhere = Ledger(
        home=home, env={**os.environ, "SECRETS_LEDGER_HOME": str(home)}, backend_factory=None
    )
    done = nowhere.run(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("usage: "), done.stderr
    assert says in lines[0] and done.stdout == ""


def test_version(ledger: Ledger) -> None:
    result = ledger.run("--version")
    assert (result.returncode, result.stdout) == (
        0,
        f"secrets-ledger {version('secrets-ledger')}\n",
    )


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A Python process of this checkout, its output captured as text."""
    return subprocess.run(
        argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


def complete(ledger: Ledger, line: str, program: list[str] | None = None) -> list[str]:
    words = line.split(" ")
    env = {
        **ledger.env,
        "_SECRETS_COMPLETE": "complete_bash",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
    }
    done = _run(program or [ledger.python, "-m", "commands"], env)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_completion_offers_services_names_and_environments(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "Tq8" * 16)
    ledger.set("nexus", "mcp.openai.apiKey", "sk-proj-" + "Zq9" * 15)
    ledger.set("github", "github.token", "ghp_" + "A1b2" * 9)
    ledger.set("database", "database.password", "p" * 40, "--environment", "production")
    ledger.run("list")  # the views catch up on any read; completion reads them as they are

    # Without -e a command acts on the default environment, so that is where names come from.
    assert complete(ledger, "secrets get --service ") == ["github", "nexus"]
    assert complete(ledger, "secrets get --service n") == ["nexus"]
    assert complete(ledger, "secrets get --service nexus --name ") == [
        "mcp.bun.apiKey",
        "mcp.openai.apiKey",
    ]
    assert complete(ledger, "secrets versions --service nexus --name mcp.o") == [
        "mcp.openai.apiKey"
    ]
    assert complete(ledger, "secrets get -e production --service ") == ["database"]
    assert complete(ledger, "secrets set --environment ") == ["default", "production"]
    assert complete(ledger, "secrets list --environment p") == ["production"]


def test_completion_never_fails_and_never_writes(ledger: Ledger, tmp_path: Any) -> None:
    nowhere = tmp_path / "nowhere"
    ledger.env["SECRETS_LEDGER_HOME"] = str(nowhere)
    assert complete(ledger, "secrets get --service ") == []
    assert not nowhere.exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "views.sqlite").write_bytes(b"not a database at all" * 100)
    ledger.env["SECRETS_LEDGER_HOME"] = str(broken)
    assert complete(ledger, "secrets get --service nexus --name ") == []


def test_completion_through_the_installed_console_script(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "Tq8" * 16)
    ledger.run("list")
    script = shutil.which("secrets")
    assert script is not None, "the `secrets` console script is not installed (pip install -e .)"
    ledger.env["PYTHONPATH"] = str(REPO)  # this checkout, not whichever is installed
    assert complete(ledger, "secrets get --service ", [script]) == ["nexus"]


HEAVY = ("keyring", "prometheus_client", "psycopg", "secretstorage", "jeepney")
# Commands that only read (or only parse an address) build no pydantic model: typer's
# pydantic coercion is bypassed for plain parameters (commands/fastparams.py) and the name
# rules live apart from the value rules (ledger/names.py).
NO_PYDANTIC = ("pydantic", "pydantic_core")

PROBE = """
import json, sys
from typer.testing import CliRunner
from commands.main import app
result = CliRunner().invoke(app, sys.argv[1:], catch_exceptions=False)
loaded = set(sys.modules) | {m.split('.')[0] for m in sys.modules}
heavy = sorted(loaded & set(json.loads(HEAVY)))
print(json.dumps({"exit": result.exit_code, "heavy": heavy}))
"""

# Modules that only some commands need (a package name matches the package and everything in
# it; a dotted name, that module alone). ledger.checkpoint is the Checkpoint aggregate and the
# signing, ledger.doctor the doctor's scan, ledger.records the one-event aggregates (read
# receipts, denials, ...: loaded when one is recorded or read back); rich.markdown (with
# markdown_it) and rich.traceback (with pygments) are what typer's help drawing imports and
# never uses here (commands/typerfast.py).
NOT_FOR_READS = ("ledger.checkpoint", "ledger.doctor")
NOT_FOR_HELP = ("rich.markdown", "markdown_it", "rich.traceback", "pygments")


def probe(ledger: Ledger, args: list[str], heavy: tuple[str, ...]) -> dict[str, Any]:
    code = PROBE.replace(
        "json.loads(HEAVY)", repr(json.dumps(list(heavy))).join(["json.loads(", ")"])
    )
    done = _run([ledger.python, "-c", code, *args], ledger.env)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize(
    ("args", "light"),
    [
        (["versions", "--service", "nexus", "--name", "mcp.bun.apiKey"], True),
        (["list"], True),
        (["dashboard"], False),  # the catalogue (rotation periods) is a pydantic model
        (["dashboard", "-o", "json"], False),
        (["audit", "log"], True),
        (["rotate-status"], False),
        (["tmux", "snippet"], True),
        (["auth", "status"], True),
        (["--help"], True),
        (["versions", "--help"], True),
        (["audit", "--help"], True),
    ],
    ids=lambda a: " ".join(a[:2]) if isinstance(a, list) else ("light" if a else "catalogue"),
)
def test_read_only_commands_never_import_keyring_or_prometheus(
    ledger: Ledger, args: list[str], light: bool
) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "Tq8" * 16)
    absent = (*_heavy(ledger), *(NO_PYDANTIC if light else ()))
    if args[0] in ("versions", "list", "auth"):
        absent = (*absent, *NOT_FOR_READS)
    if args[0] in ("versions", "auth"):  # an allowed read records nothing
        absent = (*absent, "ledger.records")
    if "--help" in args:
        absent = (*absent, *NOT_FOR_HELP)
    report = probe(ledger, args, absent)
    assert report == {"exit": 0, "heavy": []}, report


def _heavy(ledger: Ledger, modules: tuple[str, ...] = HEAVY) -> tuple[str, ...]:
    """The modules a command must not import; a PostgreSQL ledger needs its driver."""
    return tuple(m for m in modules if not (m == "psycopg" and ledger.store == "postgres"))


def test_get_builds_no_pydantic_model(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "Tq8" * 16)
    args = ["get", "--service", "nexus", "--name", "mcp.bun.apiKey", "--version", "1"]
    absent = _heavy(ledger, (*NO_PYDANTIC, "prometheus_client", "psycopg", *NOT_FOR_READS))
    report = probe(ledger, args, absent)
    assert report == {"exit": 0, "heavy": []}, report


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
