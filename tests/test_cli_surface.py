"""The CLI's surface: help with an example everywhere, --version, shell completion from the
views, and commands that import only what they need."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib.metadata import version
from typing import Any

import pytest
import typer.main

from commands.main import app
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


def test_version(ledger: Ledger) -> None:
    result = ledger.run("--version")
    assert (result.returncode, result.stdout) == (
        0,
        f"secrets-ledger {version('secrets-ledger')}\n",
    )


def complete(ledger: Ledger, line: str, program: list[str] | None = None) -> list[str]:
    words = line.split(" ")
    env = {
        **ledger.env,
        "_SECRETS_COMPLETE": "complete_bash",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
    }
    done = subprocess.run(
        program or [ledger.python, "-m", "commands"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
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

PROBE = """
import json, sys
from typer.testing import CliRunner
from commands.main import app
result = CliRunner().invoke(app, sys.argv[1:], catch_exceptions=False)
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(HEAVY)))
print(json.dumps({"exit": result.exit_code, "heavy": heavy}))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["versions", "--service", "nexus", "--name", "mcp.bun.apiKey"],
        ["list"],
        ["dashboard"],
        ["dashboard", "-o", "json"],
        ["audit", "log"],
        ["rotate-status"],
        ["tmux", "snippet"],
        ["auth", "status"],
        ["--help"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_read_only_commands_never_import_keyring_or_prometheus(
    ledger: Ledger, args: list[str]
) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "Tq8" * 16)
    probe = PROBE.replace(
        "json.loads(HEAVY)", repr(json.dumps(list(HEAVY))).join(["json.loads(", ")"])
    )
    done = subprocess.run(
        [ledger.python, "-c", probe, *args],
        env=ledger.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"exit": 0, "heavy": []}, report
