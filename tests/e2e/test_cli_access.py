"""Access control through the real CLI: the whole role x command matrix, and attacks on
tokens and session files."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.clikit import Ledger

KEY = "sk-" + "Tq8" * 16
ADDR = ["--service", "nexus", "--name", "mcp.bun.apiKey"]

# command -> (argv, stdin, the least role allowed, the action recorded when refused).
# "{tmp}" in an argument is the test's tmp_path.
#
# Deliberately outside the matrix (they never authorise the caller against a role), each with
# its own test of an unauthenticated caller:
# - `audit codes`, `metrics rules`: print static reference text; open no ledger
#   (test_commands_outside_the_matrix_need_no_session).
# - `tmux snippet|install|uninstall`: edit a tmux configuration file only; open no ledger
#   (test_commands_outside_the_matrix_need_no_session).
# - `init`: creates the first operator of a new ledger; on an existing one `--operator` is
#   refused (exit 4, recorded as anonymous `init`) whoever asks, and without it nothing
#   changes (test_commands_outside_the_matrix_need_no_session).
# - `auth login`: is the proof of identity itself (the token); a wrong token is refused and
#   recorded as `login` (test_commands_outside_the_matrix_need_no_session,
#   test_status_login_logout_flow). `auth logout` closes the caller's own session, if any;
#   `auth status` reports it, exit 4 without one (same tests).
# - `dashboard`: shows no value, reads no keychain, records nothing; its Access Status says
#   what the session may do (tests/e2e/test_cli_dashboard.py, "no session" and the other states).
# - `audit bundle`: hidden, deprecated name of `audit export` (same code, which is in).
SENIOR = "senior-engineer"
COMMANDS: dict[str, tuple[list[str], str | None, str, str]] = {
    "get": (["get", *ADDR], None, "analyst", "get"),
    "versions": (["versions", *ADDR], None, "analyst", "versions"),
    "list": (["list"], None, SENIOR, "list"),
    "set": (["set", *ADDR, "--value-stdin"], "sk-" + "Zz1" * 16, SENIOR, "set"),
    "rollback": (["rollback", *ADDR, "--version", "1"], None, SENIOR, "rollback"),
    "rotate": (["rotate", *ADDR, "--value-stdin"], "sk-" + "Xx3" * 16, SENIOR, "rotate"),
    "rotate --all": (["rotate", "--all"], None, SENIOR, "rotate"),
    "provision": (["provision", "-e", "staging", "--dry-run"], None, SENIOR, "provision"),
    "emergency-rotate": (["emergency-rotate"], None, SENIOR, "emergency-rotate"),
    "delete": (["delete", *ADDR], None, SENIOR, "delete"),
    "restore": (["restore", *ADDR], None, SENIOR, "restore"),
    "destroy": (["destroy", *ADDR, "--yes"], None, SENIOR, "destroy"),
    "doctor": (["doctor"], None, SENIOR, "doctor"),
    "auth grant": (
        ["auth", "grant", "--operator", "zed", "--role", "analyst"],
        None,
        SENIOR,
        "grant",
    ),
    "auth revoke": (["auth", "revoke", "--operator", "alice"], None, SENIOR, "revoke"),
    "rotate-status": (["rotate-status"], None, "analyst", "rotate-status"),
    "audit log": (["audit", "log"], None, "analyst", "audit log"),
    "audit verify": (["audit", "verify"], None, "analyst", "audit verify"),
    "report compliance": (["report", "compliance"], None, "analyst", "report compliance"),
    "report unused": (["report", "unused"], None, "analyst", "report unused"),
    "audit replay": (["audit", "replay", "--at", "1h"], None, "analyst", "audit replay"),
    "audit diff": (
        ["audit", "diff", "--from", "7d", "--to", "1h"],
        None,
        "analyst",
        "audit diff",
    ),
    "audit who-can": (["audit", "who-can", *ADDR], None, "analyst", "audit who-can"),
    "audit hash": (["audit", "hash", *ADDR], KEY, "analyst", "audit hash"),
    "audit pubkey": (["audit", "pubkey"], None, "analyst", "audit pubkey"),
    "audit checkpoint": (["audit", "checkpoint"], None, "analyst", "audit checkpoint"),
    "audit checkpoint --reset-witness": (
        ["audit", "checkpoint", "--reset-witness"],
        None,
        SENIOR,
        "audit checkpoint --reset-witness",
    ),
    # `audit export` signs a checkpoint first; its refusal names the command, not that step.
    "audit export": (
        ["audit", "export", "--out", "{tmp}/export"],
        None,
        "analyst",
        "audit export",
    ),
    "metrics write": (
        ["metrics", "write", "--textfile", "{tmp}/out/secrets.prom"],
        None,
        "analyst",
        "metrics write",
    ),
    # The credential is checked before the server starts; an address that is not this host's
    # makes an allowed caller stop with exit 1 ("cannot listen") instead of serving.
    "metrics serve": (
        ["metrics", "serve", "--bind", "192.0.2.1", "--port", "9"],
        None,
        "analyst",
        "metrics serve",
    ),
    "projections rebuild": (["projections", "rebuild"], None, SENIOR, "projections rebuild"),
    "ledger export-key": (["ledger", "export-key"], None, SENIOR, "export-key"),
    # Another ledger's key: an allowed caller gets exit 5 and nothing is stored.
    "ledger import-key": (
        ["ledger", "import-key", "--key-stdin"],
        "slk1.not-this-ledger." + "0" * 64,
        SENIOR,
        "import-key",
    ),
    "ledger copy": (["ledger", "copy", "--to", "{tmp}/copy"], None, SENIOR, "ledger copy"),
    "ledger retention": (["ledger", "retention", "10"], None, SENIOR, "ledger retention"),
    # Last, and install before remove: an installed schedule enlists the rotation-bot as a second
    # senior-engineer, which `auth revoke --operator alice` above must not see.
    "rotate schedule install": (
        ["rotate", "schedule", "install", "--at", "02:30", "--via", "cron"],
        None,
        SENIOR,
        "rotate-schedule-install",
    ),
    "rotate schedule status": (
        ["rotate", "schedule", "status"],
        None,
        "analyst",
        "rotate-schedule-status",
    ),
    "rotate schedule remove": (
        ["rotate", "schedule", "remove"],
        None,
        SENIOR,
        "rotate-schedule-remove",
    ),
}
STATES = ["senior-engineer", "engineer", "analyst", "no session", "expired", "revoked"]


def recorded(ledger: Ledger, topic: str) -> list[dict[str, object]]:
    """The stored events whose topic starts with `topic`, decoded, in log order."""
    return [e.state for e in ledger.events(topic)]


def denials(ledger: Ledger) -> list[dict[str, object]]:
    return recorded(ledger, "ledger.records:Denial")


def as_state(ledger: Ledger, state: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a caller in `state` (its own session file)."""
    session = tmp_path / f"session-{state.replace(' ', '-')}.json"
    env = {"SECRETS_LEDGER_SESSION_FILE": str(session)}
    if state == "senior-engineer":
        env["SECRETS_LEDGER_SESSION_FILE"] = str(ledger.home / "session.json")
        return env
    if state == "no session":
        return env
    role = {"engineer": "engineer", "analyst": "analyst"}.get(state, "engineer")
    name = state.replace(" ", "-")
    granted = ledger.run("auth", "grant", "--operator", name, "--role", role)
    assert granted.returncode == 0, granted.stderr
    token = granted.stdout.strip()
    ttl = "1s" if state == "expired" else "1h"
    login = ledger.run(
        "auth",
        "login",
        "--operator",
        name,
        "--token-stdin",
        "--ttl",
        ttl,
        input=token + "\n",
        env=env,
    )
    assert login.returncode == 0, login.stderr
    if state == "expired":
        time.sleep(1.2)
    if state == "revoked":
        assert ledger.run("auth", "revoke", "--operator", name).returncode == 0
    return env


def scheduler_stand_ins(tmp_path: Path) -> dict[str, str]:
    """`rotate schedule ...` never touches this host's crontab or systemd (as in
    tests/e2e/test_cli_schedule.py): a crontab file, a systemctl that always fails (systemd "not
    running"), and unit files under tmp_path."""
    return {
        "SECRETS_LEDGER_CRONTAB": str(tmp_path / "crontab"),
        "SECRETS_LEDGER_SYSTEMCTL": "false",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }


@pytest.mark.parametrize("state", STATES)
def test_role_matrix(ledger: Ledger, state: str, tmp_path: Path) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", KEY)
    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "Yy2" * 16)
    env = {**as_state(ledger, state, tmp_path), **scheduler_stand_ins(tmp_path)}
    (tmp_path / "out").mkdir()
    for command, (argv, stdin, least, action) in COMMANDS.items():
        before = len(denials(ledger))
        args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
        result = ledger.run(*args, input=stdin, env=env)
        rank = {"analyst": 0, "engineer": 0, SENIOR: 1}
        role = state if state in {SENIOR, "engineer", "analyst"} else None
        allowed = role is not None and rank[role] >= rank[least]
        after = denials(ledger)
        if allowed:
            assert result.returncode not in (2, 4), (command, result.returncode, result.stderr)
            assert len(after) == before, command
            continue
        assert result.returncode == 4, (state, command, result.returncode, result.stderr)
        assert result.stderr.startswith("PERMISSION_DENIED: "), result.stderr
        assert f"requires {least}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert len(after) == before + 1, command
        last = after[-1]
        expected_operator = state if state in {"engineer", "analyst"} else "anonymous"
        assert last["operator"] == expected_operator
        assert last["action"] == action, (command, last["action"])
    # A refused copy or schedule install wrote nothing (and never the host's own crontab).
    for written in ("copy", "crontab"):
        assert (tmp_path / written).exists() == (state == SENIOR), written


def test_deployment_check_analyst_cannot_set_or_delete(ledger: Ledger, tmp_path: Path) -> None:
    """The operating guide's step 4: an analyst session fails on write and delete."""
    ledger.set("nexus", "mcp.bun.apiKey", KEY)
    env = as_state(ledger, "analyst", tmp_path)
    for argv, stdin in ((["set", *ADDR, "--value-stdin"], KEY), (["delete", *ADDR], None)):
        before = len(denials(ledger))
        result = ledger.run(*argv, input=stdin, env=env)
        assert result.returncode == 4 and "PERMISSION_DENIED" in result.stderr
        assert len(denials(ledger)) == before + 1
    assert ledger.run("get", *ADDR).stdout == KEY


def test_forged_truncated_and_old_tokens_are_refused(ledger: Ledger) -> None:
    first = ledger.run("auth", "grant", "--operator", "bob", "--role", "engineer").stdout.strip()
    second = ledger.run("auth", "grant", "--operator", "bob", "--role", "engineer").stdout.strip()
    ledger.set("nexus", "mcp.bun.apiKey", KEY)
    for token in (first, second[:-4], "slt.alice." + "A" * 43, "garbage", second + "x"):
        before = len(denials(ledger))
        result = ledger.run(
            "get",
            *ADDR,
            env={"SECRETS_LEDGER_TOKEN": token, "SECRETS_LEDGER_SESSION_FILE": "/nonexistent"},
        )
        assert result.returncode == 4, token
        assert len(denials(ledger)) == before + 1
    ok = ledger.run("get", *ADDR, env={"SECRETS_LEDGER_TOKEN": second})
    assert (ok.returncode, ok.stdout) == (0, KEY)


def test_edited_session_file_cannot_claim_another_operator(ledger: Ledger, tmp_path: Path) -> None:
    env = as_state(ledger, "analyst", tmp_path)
    session = Path(env["SECRETS_LEDGER_SESSION_FILE"])
    data = json.loads(session.read_text())
    data["operator"] = "alice"  # the senior-engineer
    data["role"] = "senior-engineer"
    session.write_text(json.dumps(data))
    os.chmod(session, 0o600)
    before = len(denials(ledger))
    events = ledger.secret_events()
    result = ledger.run("set", *ADDR, "--value-stdin", input=KEY, env=env)
    assert result.returncode == 4
    assert len(denials(ledger)) == before + 1
    assert ledger.secret_events() == events  # nothing else changed: no version was written


def test_session_file_readable_by_others_is_refused(ledger: Ledger) -> None:
    session = ledger.home / "session.json"
    os.chmod(session, 0o644)
    before = len(denials(ledger))
    result = ledger.run("list")
    assert result.returncode == 4 and "readable by others" in result.stderr
    assert len(denials(ledger)) == before + 1  # recorded
    os.chmod(session, 0o600)
    assert ledger.run("list").returncode == 0


def _operators(ledger: Ledger) -> list[tuple[str, str]]:
    return [(e.originator_id, e.topic) for e in ledger.events("ledger.operator:")]


def test_unknown_role_and_hostile_operator_names(ledger: Ledger) -> None:
    """Refused (exit 5), recorded as HBSE-007 with the name escaped, nothing else changes."""
    operators = _operators(ledger)
    bad_role = ledger.run("auth", "grant", "--operator", "eve", "--role", "root")
    assert bad_role.returncode == 5 and "unknown role" in bad_role.stderr
    bad_name = ledger.run("auth", "grant", "--operator", "ev\x1b[31me", "--role", "analyst")
    assert bad_name.returncode == 5 and "control" in bad_name.stderr
    assert _operators(ledger) == operators  # no operator, role or token was added

    refused = recorded(ledger, "ledger.records:GrantRejection")
    assert [(r["name"], r["role"], r["rule"], r["operator"]) for r in refused] == [
        ("eve", "root", "role", "alice"),
        ("ev\\x1b[31me", "analyst", "control-characters", "alice"),
    ]
    log = ledger.json("audit", "log")
    rows = [e for e in log["events"] if e["code"] == "HBSE-007" and e["action"] == "grant"]
    assert len(rows) == 2 and {e["outcome"] for e in rows} == {"rejected"}
    assert [e["detail"] for e in rows] == [
        "role: operator 'eve' role 'root'",
        "control-characters: operator 'ev\\x1b[31me' role 'analyst'",  # escaped once
    ]
    assert "\x1b" not in ledger.run("audit", "log").stdout  # no raw escape reaches a terminal


def test_status_login_logout_flow(ledger: Ledger) -> None:
    status = ledger.json("auth", "status")
    assert status["operator"] == "alice" and status["role"] == "senior-engineer"
    assert "manage" in status["permissions"]
    assert ledger.run("auth", "logout").returncode == 0
    after = ledger.run("auth", "status")
    assert after.returncode == 4 and "not authenticated" in after.stdout
    wrong = ledger.run(
        "auth", "login", "--operator", "alice", "--token-stdin", input="slt.alice.wrong\n"
    )
    assert wrong.returncode == 4
    again = ledger.run(
        "auth", "login", "--operator", "alice", "--token-stdin", input=ledger.token + "\n"
    )
    assert again.returncode == 0


def test_last_senior_engineer_cannot_be_revoked(ledger: Ledger) -> None:
    result = ledger.run("auth", "revoke", "--operator", "alice")
    assert result.returncode == 5 and "last senior-engineer" in result.stderr


def test_commands_outside_the_matrix_need_no_session(ledger: Ledger, tmp_path: Path) -> None:
    """What the commands left out of the matrix do for a caller with no session."""
    nobody = {"SECRETS_LEDGER_SESSION_FILE": str(tmp_path / "none.json")}
    events = len(recorded(ledger, ""))
    tmux_conf = tmp_path / "tmux.conf"
    for argv in (
        ["audit", "codes"],
        ["metrics", "rules"],
        ["tmux", "snippet"],
        ["tmux", "install", "--file", str(tmux_conf)],
        ["tmux", "uninstall", "--file", str(tmux_conf)],
        ["init"],  # an existing ledger: nothing changes
        ["auth", "logout"],
    ):
        result = ledger.run(*argv, env=nobody)
        assert result.returncode == 0, (argv, result.stderr)
        assert "PERMISSION_DENIED" not in result.stderr, argv
    assert len(recorded(ledger, "")) == events  # none of them recorded anything
    assert "no active session" in ledger.run("auth", "logout", env=nobody).stdout

    status = ledger.run("auth", "status", env=nobody)
    assert status.returncode == 4 and "not authenticated" in status.stdout
    assert len(recorded(ledger, "")) == events

    second = ledger.run("init", "--operator", "mallory", env=nobody)
    assert second.returncode == 4 and "PERMISSION_DENIED" in second.stderr
    wrong = ledger.run(
        "auth", "login", "--operator", "alice", "--token-stdin", input="slt.alice.x\n", env=nobody
    )
    assert wrong.returncode == 4
    assert [(d["operator"], d["action"]) for d in denials(ledger)[-2:]] == [
        ("anonymous", "init"),
        ("anonymous", "login"),
    ]


# -- issue 17: credentials that are not text, names too large, a re-grant's sessions -------


def _session_bytes(ledger: Ledger, tmp_path: Path, content: bytes) -> dict[str, str]:
    session = tmp_path / "hostile-session.json"
    session.write_bytes(content)
    os.chmod(session, 0o600)
    return {"SECRETS_LEDGER_SESSION_FILE": str(session)}


@pytest.mark.parametrize(
    "where",
    [
        "token-bytes",
        "token-name-bytes",
        "session-bytes",
        "session-surrogate-name",
        "session-surrogate-secret",
        "login-stdin-bytes",
    ],
)
def test_a_credential_that_is_not_utf8_is_a_recorded_denial(
    ledger: Ledger, tmp_path: Path, where: str
) -> None:
    """Undecodable bytes (the token variable, the session file, a token on stdin) or a lone
    surrogate escaped in the session file's JSON: refused like any bad credential (exit 4)
    and recorded (HBSE-006), never an internal error."""
    good = json.loads((ledger.home / "session.json").read_text())
    env: dict[str, str] = {"SECRETS_LEDGER_SESSION_FILE": "/nonexistent"}
    if where == "token-bytes":
        env["SECRETS_LEDGER_TOKEN"] = ledger.token + "\udcff"  # sent as the byte 0xff
    elif where == "token-name-bytes":
        env["SECRETS_LEDGER_TOKEN"] = ledger.token.replace("alice", "ali\udcffce")
    elif where == "session-bytes":
        raw = json.dumps(good).replace(good["session_secret"], "s\udcff")
        env = _session_bytes(ledger, tmp_path, raw.encode("utf-8", "surrogateescape"))
    elif where == "session-surrogate-name":
        raw = json.dumps({**good, "operator": "ali\ud800ce"})  # JSON keeps it as \\ud800
        env = _session_bytes(ledger, tmp_path, raw.encode())
    elif where == "session-surrogate-secret":
        raw = json.dumps({**good, "session_secret": good["session_secret"] + "\udfff"})
        env = _session_bytes(ledger, tmp_path, raw.encode())
    before = len(denials(ledger))
    if where == "login-stdin-bytes":
        login = ["auth", "login", "--operator", "alice", "--token-stdin"]
        proc = subprocess.run(
            [ledger.python, "-m", "commands", *login],
            input=ledger.token.encode() + b"\xff\n",
            env={**ledger.env, **env},
            cwd=ledger.cwd,
            capture_output=True,
            timeout=120,
            check=False,
        )
        code, stderr = proc.returncode, proc.stderr.decode("utf-8", "replace")
    else:
        result = ledger.run("list", env=env)
        code, stderr = result.returncode, result.stderr
    assert code == 4, stderr
    assert stderr.startswith("PERMISSION_DENIED"), stderr
    assert len(denials(ledger)) == before + 1
    assert ledger.run("list").returncode == 0  # alice's own session still works


def test_a_huge_operator_name_in_a_token_is_stored_and_shown_cut(ledger: Ledger) -> None:
    """What an unauthenticated caller can make the ledger store or print is bounded."""
    name = "a" * 100_000
    before = len(denials(ledger))
    for token in (f"slt.{name}.secret", f"slt.{name}\x1b[31m.secret"):
        result = ledger.run(
            "list", env={"SECRETS_LEDGER_TOKEN": token, "SECRETS_LEDGER_SESSION_FILE": "/none"}
        )
        assert result.returncode == 4, result.stderr
        assert len(result.stderr) < 500, len(result.stderr)
        assert "\x1b" not in result.stderr
    refused = denials(ledger)[before:]
    assert len(refused) == 2
    for denial in refused:
        assert len(str(denial["reason"])) <= 300, len(str(denial["reason"]))
        assert "\x1b" not in str(denial["reason"])


def test_a_regrant_ends_the_operators_open_sessions(ledger: Ledger, tmp_path: Path) -> None:
    """A new token replaces the old one, and what was opened with the old one ends too."""
    env = as_state(ledger, "engineer", tmp_path)
    assert ledger.run("auth", "status", env=env).returncode == 0
    again = ledger.run("auth", "grant", "--operator", "engineer", "--role", "engineer")
    assert again.returncode == 0, again.stderr
    after = ledger.run("auth", "status", env=env)
    assert after.returncode == 4 and "not authenticated" in after.stdout, after.stdout
    closed = [
        e
        for e in recorded(ledger, "ledger.operator:Operator.SessionClosed")
        if e["reason"] == "token reissued"
    ]
    assert len(closed) == 1
    login = ledger.run(
        "auth",
        "login",
        "--operator",
        "engineer",
        "--token-stdin",
        input=again.stdout.strip() + "\n",
        env=env,
    )
    assert login.returncode == 0, login.stderr  # the new token opens a new session
