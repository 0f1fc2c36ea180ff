"""The everyday commands through the real CLI in a subprocess, on a real SQLite file, against
the real Secret Service and the encrypted file vault."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import infra
from tests.clikit import Ledger

API_KEY = "sk-" + "Q7x" * 16
OTHER_KEY = "sk-" + "m4Z" * 16


def test_init_is_idempotent_and_prints_the_token_once(ledger: Ledger) -> None:
    again = ledger.run("init")
    assert again.returncode == 0
    assert "nothing changed" in again.stderr and "slt." not in again.stdout
    refused = ledger.run("init", "--operator", "mallory")
    assert refused.returncode == 4 and "PERMISSION_DENIED" in refused.stderr


def _denials(ledger: Ledger) -> list[dict[str, object]]:
    return [e.state for e in ledger.events("ledger.records:Denial.")]


def test_init_again_for_the_founder_is_no_denial(ledger: Ledger) -> None:
    """Issue 17 part 6: README's first command run again by the operator who founded the
    ledger changes nothing and records no denial (it fed the UnauthorizedSecretAccess alert);
    any other name is still refused and recorded."""
    events = len(ledger.events())
    again = ledger.run("init", "--operator", "alice")
    assert again.returncode == 0, again.stderr
    assert "nothing changed" in again.stderr and "slt." not in again.stdout
    assert "PERMISSION_DENIED" not in again.stderr
    doc = ledger.run("init", "--operator", "alice", "--output", "json")
    assert doc.returncode == 0 and json.loads(doc.stdout)["created"] is False
    assert len(ledger.events()) == events and _denials(ledger) == []

    refused = ledger.run("init", "--operator", "mallory")
    assert refused.returncode == 4 and "PERMISSION_DENIED" in refused.stderr
    assert [(d["operator"], d["action"]) for d in _denials(ledger)] == [("anonymous", "init")]


def test_set_get_versions_rollback_round_trip(ledger: Ledger) -> None:
    first = ledger.set("nexus", "mcp.bun.apiKey", API_KEY)
    assert first.returncode == 0, first.stderr
    assert "v1 [" in first.stdout and API_KEY not in first.stdout + first.stderr
    ledger.set("nexus", "mcp.bun.apiKey", OTHER_KEY)
    got = ledger.run("get", "--service", "nexus", "--name", "mcp.bun.apiKey")
    assert (got.returncode, got.stdout) == (0, OTHER_KEY)
    old = ledger.run("get", "--service", "nexus", "--name", "mcp.bun.apiKey", "--version", "1")
    assert old.stdout == API_KEY

    history = ledger.run("versions", "--service", "nexus", "--name", "mcp.bun.apiKey")
    lines = history.stdout.splitlines()
    assert lines[0] == "Current Version: 2"
    assert lines[1].startswith("Last Rotation: 20") and lines[1].endswith("Z")
    assert lines[2] == "Versions:"
    assert lines[3].startswith("  v2 - ") and "(manual) [" in lines[3]

    back = ledger.run(
        "rollback", "--service", "nexus", "--name", "mcp.bun.apiKey", "--version", "1"
    )
    assert back.returncode == 0, back.stderr
    doc = ledger.json("versions", "--service", "nexus", "--name", "mcp.bun.apiKey")
    assert doc["current_version"] == 3
    assert set(doc["versions"][0]) >= {
        "version",
        "timestamp",
        "reason",
        "operator",
        "fingerprint",
        "retained",
    }
    assert doc["versions"][0]["reason"] == "rollback"
    assert doc["versions"][0]["fingerprint"] == doc["versions"][2]["fingerprint"]
    assert ledger.run("get", "--service", "nexus", "--name", "mcp.bun.apiKey").stdout == API_KEY


def test_value_sources_and_their_errors(ledger: Ledger, tmp_path: Path) -> None:
    value_file = tmp_path / "v"
    value_file.write_text(API_KEY + "\n")
    by_file = ledger.run(
        "set", "--service", "nexus", "--name", "mcp.bun.apiKey", "--value-file", str(value_file)
    )
    assert by_file.returncode == 0, by_file.stderr
    assert ledger.run("get", "--service", "nexus", "--name", "mcp.bun.apiKey").stdout == API_KEY
    by_flag = ledger.run(
        "set", "--service", "nexus", "--name", "mcp.bun.apiKey", "--value", OTHER_KEY
    )
    assert by_flag.returncode == 0 and "shell history" in by_flag.stderr
    both = ledger.run(
        "set", "--service", "nexus", "--name", "x", "--value", "a", "--value-stdin", input="b"
    )
    assert both.returncode == 2
    none_given = ledger.run("set", "--service", "nexus", "--name", "x", input="")
    assert none_given.returncode == 2


@pytest.mark.parametrize(
    ("args", "stdin", "code"),
    [
        (["get", "--service", "nexus", "--name", "missing"], None, 3),
        (["get", "--service", "nexus", "--name", "mcp.bun.apiKey", "--version", "9"], None, 3),
        (["versions", "--service", "nexus", "--name", "missing"], None, 3),
        (["set", "--service", "nexus", "--name", "empty", "--value-stdin"], "", 5),
        (["set", "--service", "nexus", "--name", "big", "--value-stdin"], "x" * 70_000, 5),
        (["set", "--service", "nexus", "--name", "nul", "--value-stdin"], "a\x00b", 5),
        (["set", "--service", "nexus", "--name", "bad\x01name", "--value-stdin"], "v", 5),
        (["set", "--service", "nexus", "--name", "bad name", "--value-stdin"], "v", 5),
        (["set", "--service", "Nexus!", "--name", "ok", "--value-stdin"], "v", 5),
        (["set", "--service", "nexus", "--name", "mcp.bun.apiKey", "--value-stdin"], "nope", 5),
        (["rollback", "--service", "nexus", "--name", "mcp.bun.apiKey", "--version", "5"], None, 3),
        (["restore", "--service", "nexus", "--name", "missing"], None, 3),
        (["get", "--service", "nexus"], None, 2),
        (["frobnicate"], None, 2),
    ],
)
def test_bad_input_gets_its_exit_code_and_changes_nothing(
    ledger: Ledger, args: list[str], stdin: str | None, code: int
) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", API_KEY)
    before = ledger.secret_events()
    result = ledger.run(*args, input=stdin)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) >= 1
    assert ledger.secret_events() == before
    assert ledger.run("get", "--service", "nexus", "--name", "mcp.bun.apiKey").stdout == API_KEY


@pytest.mark.parametrize(
    ("name", "stdin", "rule_text"),
    [
        ("empty", "", "the value is empty or only whitespace"),
        ("nul", "a\x00b", "the value contains a NUL character"),
        ("big", "x" * 70_000, "over 64 KiB"),
        ("mcp.bun.apiKey", "nope", "the value"),
    ],
)
def test_every_value_rejection_names_the_address(
    ledger: Ledger, name: str, stdin: str, rule_text: str
) -> None:
    """Generic rules (empty, NUL, size) name the secret as format rules do (issue 4)."""
    for command in ("set", "rotate"):
        result = ledger.run(
            command, "--service", "nexus", "--name", name, "--value-stdin", input=stdin
        )
        assert result.returncode in (3, 5), result.stderr
        if result.returncode == 3:  # rotate of a secret that does not exist yet
            continue
        error = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
        assert error.startswith(f"error: default/nexus/{name}: "), error
        assert rule_text in error


def test_list_masks_values_and_delete_restore_destroy(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", API_KEY)
    ledger.set("github", "github.token", "ghp_" + "A1b2" * 9)
    listed = ledger.run("list")
    assert listed.returncode == 0 and "********" in listed.stdout
    assert API_KEY not in listed.stdout
    doc = ledger.json("list")
    assert [(s["service"], s["name"]) for s in doc["secrets"]] == [
        ("github", "github.token"),
        ("nexus", "mcp.bun.apiKey"),
    ]

    assert ledger.run("delete", "--service", "nexus", "--name", "mcp.bun.apiKey").returncode == 0
    assert [s["service"] for s in ledger.json("list")["secrets"]] == ["github"]
    assert ledger.run("get", "--service", "nexus", "--name", "mcp.bun.apiKey").returncode == 3
    assert ledger.run("restore", "--service", "nexus", "--name", "mcp.bun.apiKey").returncode == 0
    assert ledger.run("get", "--service", "nexus", "--name", "mcp.bun.apiKey").stdout == API_KEY

    assert (
        ledger.run("destroy", "--service", "nexus", "--name", "mcp.bun.apiKey", "--yes").returncode
        == 0
    )
    assert ledger.keychain_get("default/nexus/mcp.bun.apiKey#v1") is None
    gone = ledger.run(
        "rollback", "--service", "nexus", "--name", "mcp.bun.apiKey", "--version", "1"
    )
    assert gone.returncode == 3 and "destroyed" in gone.stderr
    history = ledger.json("versions", "--service", "nexus", "--name", "mcp.bun.apiKey")
    assert history["destroyed"] and history["versions"][0]["retained"] is False


def test_environments_are_separate(ledger: Ledger) -> None:
    ledger.set("database", "database.password", "p" * 40, "--environment", "production")
    ledger.set("database", "database.password", "s" * 40, "--environment", "staging")
    prod = ledger.run(
        "get", "--service", "database", "--name", "database.password", "-e", "production"
    )
    staging = ledger.run(
        "get",
        "--service",
        "database",
        "--name",
        "database.password",
        env={"SECRETS_LEDGER_ENVIRONMENT": "staging"},
    )
    assert (prod.stdout, staging.stdout) == ("p" * 40, "s" * 40)
    only = ledger.json("list", "--environment", "staging")["secrets"]
    assert [s["environment"] for s in only] == ["staging"]


def test_values_never_reach_the_store_files(ledger: Ledger) -> None:
    for n in range(3):
        ledger.set("nexus", "mcp.openai.apiKey", f"sk-proj-{n}" + "Zq9" * 15)
    ledger.run("get", "--service", "nexus", "--name", "mcp.openai.apiKey")
    ledger.run("list")
    for path in ledger.home.iterdir():
        if path.is_file():
            raw = path.read_bytes()
            for n in range(3):
                assert (f"sk-proj-{n}" + "Zq9" * 15).encode() not in raw, path.name


def test_doctor_reports_a_missing_value(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", API_KEY)
    assert ledger.run("doctor").returncode == 0
    ledger.keychain_delete_matching("default/nexus/mcp.bun.apiKey#v1")
    report = ledger.run("doctor", "-o", "json")
    assert report.returncode == 6
    assert json.loads(report.stdout)["missing_values"][0].startswith(
        "default/nexus/mcp.bun.apiKey#v1."
    )
    got = ledger.run("get", "--service", "nexus", "--name", "mcp.bun.apiKey")
    assert got.returncode == 8 and "doctor" in got.stderr


def test_doctor_finds_and_repairs_an_entry_no_event_refers_to(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", API_KEY)
    ledger.set("nexus", "mcp.bun.apiKey", OTHER_KEY)
    vault = ledger._app().vault
    before = vault.entries()  # the fingerprint key and both recorded values
    assert len(before) == 3
    # Put straight into the ledger's namespace: no intent, no event.
    orphans = sorted(
        [f"default/nexus/mcp.bun.apiKey#v3.{'0' * 12}", f"default/nexus/never.set#v1.{'a' * 12}"]
    )
    for entry in orphans:
        vault.put(entry, "planted by hand")

    found = ledger.run("doctor", "-o", "json")
    assert found.returncode == 6, found.stderr
    report = json.loads(found.stdout)
    assert report["orphans"] == orphans and report["keychain_listed"] is True
    assert report["healthy"] is False and report["repaired"] == []
    table = ledger.run("doctor")
    assert table.returncode == 6
    assert [line for line in table.stdout.splitlines() if "orphaned entry" in line] == [
        f"  orphaned entry: {entry}" for entry in orphans
    ]

    repaired = ledger.run("doctor", "--repair", "-o", "json")
    assert repaired.returncode == 0, repaired.stderr
    assert json.loads(repaired.stdout)["repaired"] == orphans
    assert vault.entries() == before
    assert [vault.get(entry) for entry in orphans] == [None, None]
    for version, value in (("1", API_KEY), ("2", OTHER_KEY)):
        got = ledger.run(
            "get", "--service", "nexus", "--name", "mcp.bun.apiKey", "--version", version
        )
        assert (got.returncode, got.stdout) == (0, value), got.stderr

    again = ledger.run("doctor", "-o", "json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["healthy"] is True and report["orphans"] == [] and report["repaired"] == []


def test_ledger_files_are_private(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", API_KEY)
    assert os.stat(ledger.home).st_mode & 0o077 == 0
    # On PostgreSQL the home holds this host's session and views cache, not the log.
    expected = {"session.json"} | ({"ledger.sqlite"} if ledger.store == "sqlite" else set())
    files = {p.name: p for p in ledger.home.rglob("*") if p.is_file()}
    assert expected <= set(files), sorted(files)
    for name, path in files.items():
        assert os.stat(path).st_mode & 0o077 == 0, name


@contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """Make `path` unwritable for this user. Root ignores file modes, so as root (CI) the file
    is made immutable instead (`chattr +i`, e2fsprogs), which stops root too."""
    if os.geteuid() == 0:
        chattr = infra.require_binary("chattr")
        subprocess.run([chattr, "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run([chattr, "-i", str(path)], check=True)
    else:
        os.chmod(path, 0o400)
        try:
            yield
        finally:
            os.chmod(path, 0o600)


@pytest.mark.sqlite_file
def test_read_only_and_corrupt_ledger_files(ledger: Ledger) -> None:
    db = ledger.home / "ledger.sqlite"
    ledger.set("nexus", "mcp.bun.apiKey", API_KEY)
    before = ledger.secret_events()
    with _read_only(db):
        setting = ("set", "--service", "nexus", "--name", "other.key", "--value-stdin")
        for args in (("list",), setting):
            result = ledger.run(*args, input="sk-" + "Zq9" * 12)
            assert result.returncode == 1, (args, result.stderr)
            assert "read-only" in result.stderr and "Traceback" not in result.stderr
    assert ledger.secret_events() == before  # nothing was written
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    data[:16] = b"not a sqlite db!"
    db.write_bytes(bytes(data))
    broken = ledger.run("list")
    assert broken.returncode == 6 and "Traceback" not in broken.stderr


@pytest.mark.sqlite_file  # on PostgreSQL: test_cli_postgres.py's bad-URL and new-host tests
def test_uninitialised_home_is_a_clear_error_and_stays_empty(
    tmp_path: Path, ledger: Ledger
) -> None:
    empty = tmp_path / "nowhere"
    result = ledger.run("list", env={"SECRETS_LEDGER_HOME": str(empty)})
    assert result.returncode == 1 and "secrets init" in result.stderr
    assert not empty.exists()


def test_two_processes_writing_one_secret_lose_nothing(ledger: Ledger) -> None:
    """Two writers set one secret as fast as they can; each prints the version it was told.

    A lost update (both saving on the same version read) would be a number told to both writers
    or a number missing. Interleaving proves the contention was real: each writer kept writing on
    versions the other had just made. 2 x 30 writes is well past the retention of 10, so pruning
    runs under the race too (the count was 2 x 100, 54 to 107 s per variant, for no other
    property: SECRETS_LEDGER_TEST_WRITES still sets it)."""
    script = (
        "import re, subprocess, sys\n"
        "for i in range(int(sys.argv[2])):\n"
        "    v = f'{sys.argv[1]}-{i:03d}-' + 'x' * 20\n"
        "    r = subprocess.run([sys.executable, '-m', 'commands', 'set', '--service',"
        " 'nexus', '--name', 'shared', '--value-stdin'], input=v, text=True,"
        " capture_output=True)\n"
        "    if r.returncode: sys.exit(r.stderr)\n"
        "    print(re.search(r' v([0-9]+) ', r.stdout).group(1), flush=True)\n"
    )
    count = int(os.environ.get("SECRETS_LEDGER_TEST_WRITES", "30"))
    procs = {
        tag: subprocess.Popen(
            [ledger.python, "-c", script, tag, str(count)],
            env=ledger.env,
            cwd=ledger.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    }
    told: dict[int, list[str]] = {}
    for tag, p in procs.items():
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
        numbers = [int(n) for n in out.split()]
        assert len(numbers) == count, out
        for n in numbers:
            told.setdefault(n, []).append(tag)
    assert sorted(told) == list(range(1, 2 * count + 1))
    assert all(len(tags) == 1 for tags in told.values()), told
    switches = sum(told[n] != told[n + 1] for n in range(1, 2 * count))
    assert switches >= count // 3, f"the writers hardly overlapped: {told}"
    doc = ledger.json("versions", "--service", "nexus", "--name", "shared")
    numbers = [v["version"] for v in doc["versions"]]
    assert sorted(numbers) == list(range(1, 2 * count + 1))
    retained = [v["version"] for v in doc["versions"] if v["retained"]]
    assert len(retained) == 10
    for n in retained:
        got = ledger.run("get", "--service", "nexus", "--name", "shared", "--version", str(n))
        assert got.returncode == 0 and got.stdout.endswith("x" * 20)
    assert ledger.run("doctor").returncode == 0


def test_set_validates_against_the_team_catalogue(ledger: Ledger, tmp_path: Path) -> None:
    team = tmp_path / "team.toml"
    team.write_text(
        '[[key]]\nservice = "payments"\nname = "webhook.secret"\n'
        'format = "generated_password"\nrotation = "generated"\n'
    )
    short = "too-short-for-a-generated-password"[:12]
    args = ("set", "--service", "payments", "--name", "webhook.secret", "--value-stdin")
    # Unknown to the built-in catalogue: generic rules accept it.
    assert ledger.run(*args, input=short).returncode == 0
    # Known to the team's catalogue (flag or environment): its format rejects it, recorded.
    for extra, env in (
        (("--catalogue", str(team)), {}),
        ((), {"SECRETS_LEDGER_CATALOGUE": str(team)}),
    ):
        refused = ledger.run(*args, *extra, input=short, env=env)
        assert refused.returncode == 5, refused.stderr
        assert "payments/webhook.secret" in refused.stderr and short not in refused.stderr
    good = "Zx9" * 12
    assert ledger.run(*args, "--catalogue", str(team), input=good).returncode == 0
    # A broken catalogue file fails before anything is read or written.
    team.write_text("[[key]]\nservice = 1\n")
    broken = ledger.run(*args, "--catalogue", str(team), input=good)
    assert broken.returncode == 5 and "team.toml" in broken.stderr, broken.stderr
    assert "Traceback" not in broken.stderr
    versions = ledger.run(
        "versions", "--service", "payments", "--name", "webhook.secret", "-o", "json"
    )
    assert len(json.loads(versions.stdout)["versions"]) == 2
