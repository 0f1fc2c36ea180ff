"""Issue 22: what a new user ran into, each through the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import pty
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.clikit import REPO, Ledger

API_KEY = "sk-" + "Q7x" * 16
ADDR = ("--service", "nexus", "--name", "mcp.bun.apiKey")


def _on_terminal(ledger: Ledger, args: list[str], answer: bytes) -> tuple[int, str]:
    """Run with stdin and stderr on a terminal that has `answer` typed into it already."""
    leader, follower = pty.openpty()
    try:
        os.write(leader, answer)
        done = subprocess.run(
            [ledger.python, "-m", "commands", *args],
            env=ledger.env,
            cwd=ledger.cwd,
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=120,
            check=False,
        )
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: nobody holds the other side any more
                break
            if not chunk:
                break
            seen += chunk
        return done.returncode, seen.decode(errors="replace")
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)


def test_destroy_off_a_terminal_without_yes_refuses_and_keeps_the_values(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", API_KEY)
    refused = ledger.run("destroy", *ADDR)
    assert refused.returncode == 2, refused.stderr
    assert "--yes" in refused.stderr and "Traceback" not in refused.stderr
    assert ledger.run("get", *ADDR).stdout == API_KEY
    assert not ledger.events("ledger.secret:Secret.Destroyed")
    done = ledger.run("destroy", *ADDR, "--yes")
    assert done.returncode == 0, done.stderr
    assert ledger.run("get", *ADDR).returncode == 3


def test_destroy_on_a_terminal_asks_and_no_keeps_the_values(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", API_KEY)
    code, seen = _on_terminal(ledger, ["destroy", *ADDR], b"n\n")
    assert code == 1 and "cannot be undone" in seen and "nothing changed" in seen, seen
    assert ledger.run("get", *ADDR).stdout == API_KEY
    code, seen = _on_terminal(ledger, ["destroy", *ADDR], b"y\n")
    assert code == 0, seen
    assert ledger.run("get", *ADDR).returncode == 3


def _into_closed_pipe(ledger: Ledger, *args: str) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader has gone already (`| head -1` after one line)."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run(
            [ledger.python, "-m", "commands", *args],
            env=ledger.env,
            cwd=ledger.cwd,
            stdin=subprocess.DEVNULL,
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(writer)


def test_a_closed_output_pipe_ends_quietly_as_sigpipe_not_as_a_finding(ledger: Ledger) -> None:
    """`secrets rotate-status | head -1` exited 1, the code of "overdue"; a closed pipe is
    not a finding: the process ends as any Unix tool does (SIGPIPE, 141 in a shell)."""
    import signal

    ledger.set("nexus", "mcp.bun.apiKey", API_KEY)
    for args in (
        ["rotate-status"],
        ["rotate-status", "-o", "json"],
        ["list"],
        ["audit", "log"],
        ["versions", *ADDR],
        ["get", *ADDR],
        ["--help"],
        ["audit", "--help"],
        ["--version"],
    ):
        ended = _into_closed_pipe(ledger, *args)
        assert (ended.returncode, ended.stderr) == (-signal.SIGPIPE, ""), (args, ended)


def test_dash_h_is_help_everywhere(ledger: Ledger) -> None:
    for args in (["-h"], ["list", "-h"], ["audit", "-h"], ["audit", "log", "-h"]):
        shown = ledger.run(*args)
        assert shown.returncode == 0, (args, shown.stderr)
        assert "Usage: secrets" in shown.stdout, args
    assert ledger.run("-h").stdout == ledger.run("--help").stdout


def test_choices_are_case_insensitive(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", API_KEY)
    listed = ledger.run("list", "-o", "JSON")
    assert listed.returncode == 0, listed.stderr
    assert [s["name"] for s in json.loads(listed.stdout)["secrets"]] == ["mcp.bun.apiKey"]
    csv = ledger.run("audit", "log", "-o", "CSV")
    assert csv.returncode == 0 and csv.stdout.startswith("position,"), csv.stderr
    report = ledger.run("report", "compliance", "--format", "Json")
    assert report.returncode == 0 and json.loads(report.stdout), report.stderr
    assert ledger.run("list", "-o", "xml").returncode == 2


def test_a_missing_option_argument_points_to_the_commands_own_help(ledger: Ledger) -> None:
    bare = ledger.run("set", *ADDR, "--value")
    assert bare.returncode == 2
    assert "requires an argument" in bare.stderr and "`secrets set --help`" in bare.stderr
    login = ledger.run("auth", "login", "--operator")
    assert "`secrets auth login --help`" in login.stderr


def test_a_version_below_one_is_a_usage_error_not_not_found(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", API_KEY)
    for args in (["get", *ADDR, "--version", "-1"], ["rollback", *ADDR, "--version", "0"]):
        refused = ledger.run(*args)
        assert refused.returncode == 2, (args, refused.stderr)
        assert "--version" in refused.stderr and "greater than or equal to 1" in refused.stderr
    assert ledger.run("get", *ADDR, "--version", "1").stdout == API_KEY


def test_missing_input_is_usage_and_empty_input_is_refused_alike(ledger: Ledger) -> None:
    """One rule (docs/cli.md, Exit codes): nothing given at all is exit 2; given but empty is
    exit 5, for a token as for a value. An empty token is no login attempt: no denial."""
    denials = len(ledger.events("ledger.records:Denial."))
    no_token = ledger.run("auth", "login", "--operator", "alice", input="")
    no_value = ledger.run("set", *ADDR, input="")
    assert (no_token.returncode, no_value.returncode) == (2, 2), (no_token, no_value)
    assert no_token.stderr.startswith("usage: no token")
    empty_token = ledger.run("auth", "login", "--operator", "alice", "--token-stdin", input="\n")
    empty_value = ledger.run("set", *ADDR, "--value-stdin", input="\n")
    assert (empty_token.returncode, empty_value.returncode) == (5, 5), (empty_token, empty_value)
    assert "token read from stdin is empty" in empty_token.stderr
    assert "auth login" not in empty_token.stderr
    assert len(ledger.events("ledger.records:Denial.")) == denials


# The `secrets:` names of the team's operating guide (`bun run secrets:list` and so on).
GUIDE_NAMES = {
    "secrets:list": "list",
    "secrets:set": "set",
    "secrets:delete": "delete",
    "secrets:rotate": "rotate",
    "secrets:emergency-rotate": "emergency-rotate",
    "secrets:provision": "provision",
    "secrets:rotate:status": "rotate-status",
    "secrets:versions": "versions",
    "secrets:rollback": "rollback",
}


def test_the_operating_guides_colon_names_are_hidden_aliases(ledger: Ledger) -> None:
    for alias, command in GUIDE_NAMES.items():
        as_alias = ledger.run(alias, "--help")
        assert as_alias.returncode == 0, (alias, as_alias.stderr)
        assert as_alias.stdout == ledger.run(command, "--help").stdout, alias
    ledger.set("nexus", "mcp.bun.apiKey", API_KEY)
    assert ledger.run("secrets:list").stdout == ledger.run("list").stdout
    history = ledger.run("secrets:versions", "--service=nexus", "--name=mcp.bun.apiKey")
    assert history.returncode == 0 and "Current Version: 1" in history.stdout, history.stderr
    status = ledger.run("secrets:rotate:status", "-o", "json")
    assert status.returncode == 0 and json.loads(status.stdout), status.stderr
    assert "secrets:list" not in ledger.run("--help").stdout


def test_two_words_of_one_command_suggest_it(ledger: Ledger) -> None:
    for args in (["rotate", "status"], ["rotate:status"], ["emergency", "rotate"]):
        wrong = ledger.run(*args)
        assert wrong.returncode == 2, args
        meant = "emergency-rotate" if args[0] == "emergency" else "rotate-status"
        assert f"did you mean `secrets {meant}`?" in wrong.stderr, (args, wrong.stderr)


def test_provision_from_says_the_rule_broken_as_set_does(ledger: Ledger, tmp_path: Path) -> None:
    values = tmp_path / "values.toml"
    values.write_text('[staging.github]\n"github.token" = "ghp_short"\n')
    values.chmod(0o600)
    by_set = ledger.run(
        "set",
        "-e",
        "staging",
        "--service",
        "github",
        "--name",
        "github.token",
        "--value-stdin",
        input="ghp_short",
    )
    assert by_set.returncode == 5
    rule = by_set.stderr.strip().removeprefix("error: staging/github/github.token: ")
    assert rule and "github_token" not in rule  # what `set` says: the rule, in words
    refused = ledger.run("provision", "-e", "staging", "--from", str(values))
    assert refused.returncode == 5, refused.stderr
    assert f"staging/github/github.token: github_token: {rule}" in refused.stderr
    assert "ghp_short" not in refused.stderr + refused.stdout


def test_versions_after_destroy_says_destroyed_not_pruned(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", API_KEY)
    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "W2e" * 16)
    assert ledger.run("destroy", *ADDR, "--yes").returncode == 0
    shown = ledger.run("versions", *ADDR)
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if line.startswith("  v")]
    assert len(lines) == 2 and all(line.endswith(" (value destroyed)") for line in lines)
    assert "pruned" not in shown.stdout


def test_the_dashboards_recent_access_logs_show_access_only(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", API_KEY)
    assert ledger.run("get", *ADDR).returncode == 0
    checkpoint = ledger.run("audit", "checkpoint")  # a signed checkpoint row, newest
    assert checkpoint.returncode == 0, checkpoint.stderr
    recent = ledger.json("dashboard")["recent"]
    assert [(r["code"], r["action"]) for r in recent] == [("HBSE-001", "get"), ("HBSE-002", "set")]


def test_audit_diff_lists_a_session_opened_and_closed_inside_the_window(ledger: Ledger) -> None:
    import time

    stamp = ledger.json("audit", "log", "--limit", "1")["events"][-1]["timestamp"]
    time.sleep(0.05)
    login = ("auth", "login", "--operator", "alice", "--token-stdin")
    assert ledger.run(*login, input=ledger.token).returncode == 0
    assert ledger.run("auth", "logout").returncode == 0
    assert ledger.run(*login, input=ledger.token).returncode == 0
    opened = [
        e.state["session_id"][:8] for e in ledger.events("ledger.operator:Operator.SessionOpened")
    ]
    brief, still_open = opened[-2], opened[-1]
    changes = ledger.json("audit", "diff", "--from", stamp, "--to", "now")
    assert {("alice", brief), ("alice", still_open)} <= {
        (s["operator"], s["session"]) for s in changes["sessions_opened"]
    }
    assert ("alice", brief) in {(s["operator"], s["session"]) for s in changes["sessions_ended"]}
    assert ("alice", still_open) not in {
        (s["operator"], s["session"]) for s in changes["sessions_ended"]
    }
    text = ledger.run("audit", "diff", "--from", stamp, "--to", "now").stdout
    assert f"login    alice session {brief}" in text and f"logout   alice session {brief}" in text


def _bare(cli_env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in cli_env.items() if not k.startswith("SECRETS_LEDGER_PASSPHRASE")}
    env["SECRETS_LEDGER_VAULT"] = "file"
    return subprocess.run(
        [sys.executable, "-m", "commands", *args],
        input=stdin,
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_failed_init_leaves_no_ledger_and_the_next_step_stays_init(
    cli_env: dict[str, str],
) -> None:
    home = Path(cli_env["SECRETS_LEDGER_HOME"])
    failed = _bare(cli_env, "init", "--operator", "alice")
    assert failed.returncode == 8 and "no passphrase" in failed.stderr, failed.stderr
    assert not (home / "ledger.sqlite").exists()
    for args in (["auth", "status"], ["dashboard"], ["list"]):
        after = _bare(cli_env, *args)
        assert after.returncode == 1 and "run `secrets init`" in after.stderr, (args, after)
        assert "auth login" not in after.stderr + after.stdout
    login = _bare(cli_env, "auth", "login", "--operator", "alice", "--token-stdin", stdin="x\n")
    assert login.returncode == 1 and "run `secrets init`" in login.stderr, login.stderr


def test_an_empty_ledger_file_asks_for_init_and_records_nothing(cli_env: dict[str, str]) -> None:
    """A store nobody initialised (left by an older failed init, or an empty PostgreSQL
    database): commands without a credential say `secrets init`; a login records no denial."""
    from ledger.store.opening import open_ledger

    home = Path(cli_env["SECRETS_LEDGER_HOME"])
    open_ledger(home, create=True).close()
    for args in (["auth", "status"], ["dashboard"]):
        after = _bare(cli_env, *args)
        assert after.returncode == 1 and "run `secrets init`" in after.stderr, (args, after)
    login = _bare(cli_env, "auth", "login", "--operator", "alice", "--token-stdin", stdin="x\n")
    assert login.returncode == 1 and "run `secrets init`" in login.stderr, login.stderr
    with sqlite3.connect(home / "ledger.sqlite") as db:
        assert db.execute("SELECT count(*) FROM stored_events").fetchone() == (0,)
