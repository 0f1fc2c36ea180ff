"""The CLI's surface: help with an example everywhere, --version, shell completion from the
views, and commands that import only what they need."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from importlib.metadata import version
from typing import Any

import pytest

from tests.clikit import REPO, Ledger


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
# signing, ledger.integrity.doctor the doctor's scan, ledger.records the one-event aggregates (read
# receipts, denials, ...: loaded when one is recorded or read back); rich.markdown (with
# markdown_it) and rich.traceback (with pygments) are what typer's help drawing imports and
# never uses here (commands/typerfast.py).
NOT_FOR_READS = ("ledger.checkpoint", "ledger.integrity.doctor")
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
